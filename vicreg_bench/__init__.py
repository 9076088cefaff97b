"""vicreg-bench: the VICReg paper's transfer benchmarks for any self-supervised ResNet checkpoint."""

__version__ = "0.1.0"
