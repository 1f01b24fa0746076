"""Architectures (one small file each), their registry, and the DigitClassifier LightningModule."""

from src.models.registry import ARCHITECTURES, build_model, count_parameters

__all__ = ["ARCHITECTURES", "build_model", "count_parameters"]
