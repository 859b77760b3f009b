"""Optimizer and epoch-based LR schedule from the config."""
import torch


def build_optimizer(cfg, model):
    """Adam or SGD over the trainable parameters. A model with ``param_groups(cfg)`` (a list of
    optimizer groups, e.g. one with its own weight decay) gives its groups; each group's
    trainable parameters are kept (empty groups dropped), and the SOLVER's values are the
    defaults."""
    if hasattr(model, "param_groups"):
        groups = [{**g, "params": [p for p in g["params"] if p.requires_grad]} for g in model.param_groups(cfg)]
        groups = [g for g in groups if g["params"]]  # e.g. a part generator without parameters
    else:
        groups = [{"params": [p for p in model.parameters() if p.requires_grad]}]
    s = cfg.SOLVER
    if s.OPTIMIZER == "Adam":
        return torch.optim.Adam(groups, lr=s.BASE_LR, weight_decay=s.WEIGHT_DECAY)
    if s.OPTIMIZER == "SGD":
        return torch.optim.SGD(groups, lr=s.BASE_LR, momentum=s.MOMENTUM, weight_decay=s.WEIGHT_DECAY, nesterov=True)
    raise KeyError(f"Unknown SOLVER.OPTIMIZER '{s.OPTIMIZER}', expected Adam or SGD")


def build_lr_scheduler(cfg, optimizer):
    """A scheduler stepped once per epoch: linear warm-up over WARMUP_EPOCHS, then StepLR
    (multi-step at STEPS) or cosine annealing to 0 at MAX_EPOCH."""
    s = cfg.SOLVER

    def factor(epoch):
        warm = min(1.0, (epoch + 1) / s.WARMUP_EPOCHS) if s.WARMUP_EPOCHS > 0 else 1.0
        if s.SCHEDULER == "StepLR":
            return warm * s.GAMMA ** sum(epoch >= step for step in s.STEPS)
        if s.SCHEDULER == "CosineAnnealingLR":
            return warm * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * epoch / s.MAX_EPOCH)).item())
        raise KeyError(f"Unknown SOLVER.SCHEDULER '{s.SCHEDULER}', expected StepLR or CosineAnnealingLR")

    factor(0)  # fail now, not after the first epoch, on a bad scheduler name
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
