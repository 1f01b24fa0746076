"""The one metric vocabulary: what is logged, and which way is better for each `monitor`."""

MONITOR_MODES = {
    "train/loss": "min",
    "train/acc": "max",
    "val/loss": "min",
    "val/acc": "max",
}
