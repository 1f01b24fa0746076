"""Class probabilities from one or several trained models (an ensemble averages softmax outputs)."""

import functools

import torch

from src.data.transforms import normalise

# Test-time augmentation: the image itself and its one-pixel shifts (down, up, right, left), the size
# of the shifts training augmentation and MNIST's own centring error produce.
TTA_SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))


def shifted(images: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """[N, H, W] moved by (dy, dx) pixels, the uncovered border black (MNIST's background)."""
    out = torch.zeros_like(images)
    h, w = images.shape[-2:]
    out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = images[
        ..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@functools.cache
def memory_format_on(device_type: str) -> str:
    """The weight layout training uses on this kind of device (the hardware plan's "auto")."""
    from src.hardware import plan_memory_format, probe_machine

    return plan_memory_format(device_type, probe_machine())


@torch.inference_mode()
def predict_probabilities(
    model, images: torch.Tensor, batch_size: int = 1000, device=None, tta: bool = False
) -> torch.Tensor:
    """uint8 images [N, 28, 28] -> softmax probabilities [N, 10] (float32, on the CPU).

    With `tta`, each image's probabilities are the mean over the image and its TTA_SHIFTS.
    """
    from src.build import lay_out

    device = torch.device(device or pick_device())
    model = lay_out(model.to(device), memory_format_on(device.type)).eval()  # NHWC on CPU: 1.3-2.4x NCHW
    shifts = TTA_SHIFTS if tta else TTA_SHIFTS[:1]
    chunks = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].to(device)
        views = [model(normalise(shifted(batch, dy, dx))).float().softmax(dim=1) for dy, dx in shifts]
        chunks.append(torch.stack(views).mean(dim=0).cpu())
    return torch.cat(chunks) if chunks else torch.empty(0, 10)


def ensemble_probabilities(members: list[torch.Tensor]) -> torch.Tensor:
    """The mean of the members' probabilities [N, 10]."""
    return torch.stack(members).mean(dim=0)
