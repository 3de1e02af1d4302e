"""vsgm: the Vanilla Score-Based Generative Model (VE SDE) as a reproducible benchmark."""

__version__ = "0.1.0"
