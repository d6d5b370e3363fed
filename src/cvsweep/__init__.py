"""cvsweep: Hydra-configured, MLflow-tracked experiment sweeps for small image classifiers."""

__version__ = "0.1.0"
