"""Image transforms. They output float tensors in [0, 1]; the model normalises its own input."""
import torchvision.transforms as T


def build_transforms(cfg, is_train):
    if not is_train:
        return T.Compose([T.Resize(tuple(cfg.INPUT.SIZE_TEST), interpolation=T.InterpolationMode.BICUBIC), T.ToTensor()])
    size = tuple(cfg.INPUT.SIZE_TRAIN)
    steps = [T.Resize(size, interpolation=T.InterpolationMode.BICUBIC)]
    if cfg.INPUT.FLIP_PROB > 0:
        steps.append(T.RandomHorizontalFlip(cfg.INPUT.FLIP_PROB))
    if cfg.INPUT.PADDING > 0:
        steps += [T.Pad(cfg.INPUT.PADDING), T.RandomCrop(size)]
    steps.append(T.ToTensor())
    if cfg.INPUT.REA.ENABLED:
        # Erased pixels get the ImageNet mean, i.e. 0 after the model's normalisation (the
        # reference writes the raw mean into an already-normalised tensor instead).
        steps.append(T.RandomErasing(p=cfg.INPUT.REA.PROB, scale=(0.02, 0.4), ratio=(0.3, 3.33),
                                     value=tuple(cfg.MODEL.PIXEL_MEAN)))
    return T.Compose(steps)
