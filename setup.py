from setuptools import find_packages, setup

ONNX = ["onnx>=1.16", "onnxruntime>=1.18", "onnxscript>=0.3"]

setup(
    name="pisl",
    version="0.1.0",
    description="A fast-reid-style toolbox for unsupervised person and vehicle re-identification, with PISL",
    python_requires=">=3.9",
    packages=find_packages(include=["pisl", "pisl.*", "projects", "projects.*"]),
    package_data={"projects": ["*/configs/*.yml"]},
    install_requires=[
        "torch>=2.0",
        "torchvision>=0.15",
        "yacs>=0.1.8",
        "pyyaml",
        "faiss-cpu>=1.7",
        "numba>=0.59",  # the clustering's kernels (pisl/cluster: pair sums, top-k heaps), compiled
        "scikit-learn>=1.0",
        "scipy",
        "numpy",
        "tabulate",
        "termcolor",
        "tqdm",
        "pillow",
    ],
    extras_require={
        # tools/export_onnx.py: torch's exporter (onnxscript) and the runtime that checks it.
        "onnx": ONNX,
        # The tests check the ONNX export and the pictures too.
        "test": ["pytest>=7", "matplotlib>=3.5", "ruff>=0.5", *ONNX],
        "tensorboard": ["tensorboard"],
        # tools/visualize.py
        "vis": ["matplotlib>=3.5"],
    },
)
