"""Class probabilities from one or several trained models (an ensemble averages softmax outputs)."""

import torch

from src.data.transforms import normalise


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@torch.inference_mode()
def predict_probabilities(model, images: torch.Tensor, batch_size: int = 1000, device=None) -> torch.Tensor:
    """uint8 images [N, 28, 28] -> softmax probabilities [N, 10] (float32, on the CPU)."""
    device = device or pick_device()
    model = model.to(device).eval()
    chunks = []
    for start in range(0, len(images), batch_size):
        batch = normalise(images[start : start + batch_size].to(device))
        chunks.append(model(batch).float().softmax(dim=1).cpu())
    return torch.cat(chunks) if chunks else torch.empty(0, 10)


def ensemble_probabilities(members: list[torch.Tensor]) -> torch.Tensor:
    """The mean of the members' probabilities [N, 10]."""
    return torch.stack(members).mean(dim=0)
