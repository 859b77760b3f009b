#!/usr/bin/env python
"""Export a trained model's inference graph to ONNX and check it against torch.

    python tools/export_onnx.py --config-file F --output model.onnx MODEL.WEIGHTS model_final.pth
    python tools/export_onnx.py --config-file projects/PISL/configs/market.yml --with-parts --output pisl.onnx MODEL.WEIGHTS ...

The graph takes ``images`` (N x 3 x H x W, RGB in [0, 1] at INPUT.SIZE_TEST; N is dynamic)
and returns ``features`` (N x D, L2-normalised): the global feature, or for PISL with
``--with-parts`` the global feature and the parts, whose DDIM sampling is unrolled into the
graph (PISL.DIFFUSION.SAMPLE_STEPS steps). The export is checked with onnxruntime on random
images against torch and the largest absolute difference is printed (needs the ``onnx``
extra: pip install -e ".[onnx]").
"""
import os

import numpy as np
import torch
import torch.nn as nn

from pisl.config import ConfigError, load_config
from pisl.engine.preflight import checked_config, exit_on_bad_input
from pisl.engine.defaults import ConfigArgumentParser
from pisl.modeling import build_model
from pisl.utils.checkpoint import load_model_weights


class InferenceGraph(nn.Module):
    """images -> the model's eval feature, as one tensor-in tensor-out module."""

    def __init__(self, model):
        super().__init__()
        self.model = model.eval()

    def forward(self, images):
        return self.model({"images": images})


def export_onnx(model, size, path, batch=2):
    """Write ``model``'s inference graph to ``path`` with a dynamic batch dimension."""
    graph = InferenceGraph(model).cpu().eval()
    images = torch.rand(batch, 3, *size)
    torch.onnx.export(graph, (images,), path, input_names=["images"], output_names=["features"],
                      dynamic_shapes={"images": {0: torch.export.Dim("batch", min=1)}}, dynamo=True,
                      external_data=False, optimize=False, verbose=False)
    return graph


def check_onnx(graph, path, size, batch=3, seed=0):
    """Largest |onnxruntime - torch| over ``batch`` random images (another batch size than the
    export's, to exercise the dynamic dimension)."""
    import onnxruntime

    images = torch.rand(batch, 3, *size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        expected = graph(images).numpy()
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = session.run(["features"], {"images": images.numpy()})[0]
    return float(np.abs(got - expected).max()), got.shape


@exit_on_bad_input
def main():
    parser = ConfigArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", required=True)
    parser.add_argument("--with-parts", action="store_true", help="PISL: export the global+parts feature")
    args = parser.parse_args()
    opts = args.opts + ["MODEL.DEVICE", "cpu"]
    if args.with_parts:
        if "PISL" not in load_config(args.config_file, args.opts, check=False):
            raise ConfigError(f"--with-parts: the model of {args.config_file} has no parts (only PISL's has); "
                              "export without --with-parts")
        opts += ["PISL.TEST_WITH_PARTS", "True"]
    cfg = checked_config(args.config_file, opts, need_data=False, need_weights=True)
    model = build_model(cfg)
    load_model_weights(model, cfg.MODEL.WEIGHTS, partial=cfg.MODEL.PARTIAL_LOAD)
    size = tuple(cfg.INPUT.SIZE_TEST)
    graph = export_onnx(model, size, args.output)
    diff, shape = check_onnx(graph, args.output, size)
    print(f"Exported {args.output} ({os.path.getsize(args.output) / 1e6:.1f} MB): images N x 3 x {size[0]} x {size[1]} "
          f"-> features {shape[1]}-d; onnxruntime vs torch on {shape[0]} random images: max |diff| {diff:.2e}")


if __name__ == "__main__":
    main()
