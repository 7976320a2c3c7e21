"""ASSIST: strategic data sampling for supervised training."""

__version__ = "0.1.0"
