#!/usr/bin/env python
"""Features of a trained model for a folder or a list of images, saved as .npz.

    python tools/extract_features.py --config-file F --input FOLDER_OR_LIST --output feats.npz MODEL.WEIGHTS model_final.pth

A folder is searched recursively for .jpg/.jpeg/.png/.bmp files; a list file names one image
per line (first field; relative paths are relative to the list file's folder). The .npz holds
``features`` (N x D float32, L2-normalised) and ``names`` (the image paths as given, relative
to the folder for a folder). Unreadable images are skipped with a warning and left out.
"""
import logging
import os

import numpy as np

from pisl.engine.preflight import checked_config, exit_on_bad_input
from pisl.data.common import read_image
from pisl.engine import Predictor
from pisl.engine.defaults import ConfigArgumentParser
from pisl.utils.logger import setup_logger

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
logger = logging.getLogger("pisl.extract_features")


def list_images(source):
    """(names, paths) of the images of a folder (recursive, sorted) or of a list file."""
    if os.path.isdir(source):
        paths = sorted(os.path.join(d, f) for d, _, files in os.walk(source) for f in files
                       if f.lower().endswith(IMAGE_EXTENSIONS))
        return [os.path.relpath(p, source) for p in paths], paths
    if not os.path.isfile(source):
        raise FileNotFoundError(f"--input {source} is neither a folder nor a list file")
    with open(source) as f:
        names = [line.split()[0] for line in f if line.strip() and not line.startswith("#")]
    return names, [os.path.join(os.path.dirname(source), n) for n in names]


@exit_on_bad_input
def main():
    parser = ConfigArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--input", required=True, help="a folder of images or a list file")
    parser.add_argument("--output", required=True, help="the .npz to write")
    args = parser.parse_args()
    setup_logger(None)
    cfg = checked_config(args.config_file, args.opts, need_data=False, need_weights=True)
    names, paths = list_images(args.input)
    if not paths:
        raise FileNotFoundError(f"--input {args.input}: no image ({', '.join(IMAGE_EXTENSIONS)}) in it")
    predictor = Predictor(cfg)
    images, kept = [], []
    for name, path in zip(names, paths):
        try:
            images.append(read_image(path))
            kept.append(name)
        except (OSError, ValueError) as err:
            logger.warning(f"Skipping unreadable image {path}: {err}")
    features = predictor(images).numpy().astype(np.float32)
    np.savez(args.output, features=features, names=np.array(kept))
    logger.info(f"Wrote {features.shape[0]} x {features.shape[1]} features of {args.input} to {args.output} "
                f"({len(names) - len(kept)} unreadable images skipped)")


if __name__ == "__main__":
    main()
