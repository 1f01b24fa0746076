"""File formats (MNIST IDX, Kaggle CSV), on-device transforms and the DigitsDataModule."""
