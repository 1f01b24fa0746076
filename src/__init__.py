"""mnist-lightning: handwritten-digit recognition with PyTorch Lightning."""
