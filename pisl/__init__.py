"""PISL toolbox core: unsupervised person / vehicle re-identification."""
__version__ = "0.1.0"
