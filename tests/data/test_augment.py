import pytest
import torch

from src.data.augment import Augmentation
from src.data.mnist import load_mnist
from src.data.transforms import normalise
from src.errors import UserError
from tests.conftest import MNIST_DIR

STRONG = Augmentation(rotation=15, zoom=0.2, shift=0.1, elastic_alpha=2.0)


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    images, _ = load_mnist("test", MNIST_DIR)
    return normalise(images[:64])


def test_keeps_shape_dtype_and_order(batch):
    torch.manual_seed(0)
    out = STRONG(batch)
    assert out.shape == batch.shape and out.dtype == batch.dtype and out.device == batch.device
    # Order is kept: image i is a flat 12x12 block of brightness i / N; after any transform its
    # brightest pixel still says which image it was.
    blocks = torch.zeros(32, 1, 28, 28)
    blocks[:, :, 8:20, 8:20] = torch.arange(1, 33).view(32, 1, 1, 1) / 32
    moved = STRONG(blocks)
    assert torch.allclose(moved.amax(dim=(1, 2, 3)), blocks.amax(dim=(1, 2, 3)), atol=1e-3)
    assert not torch.equal(moved, blocks)


def test_each_image_gets_its_own_parameters(batch):
    same = batch[:1].expand(16, -1, -1, -1).contiguous()
    torch.manual_seed(1)
    out = Augmentation(rotation=15, zoom=0.1, shift=0.1)(same)
    differences = (out[1:] - out[:1]).abs().flatten(1).amax(dim=1)
    assert (differences > 0.1).all()
    theta = Augmentation(rotation=15).random_affine(1000, torch.device("cpu"))
    angles = torch.atan2(theta[:, 1, 0], theta[:, 0, 0]).rad2deg()
    assert angles.abs().max() <= 15 + 1e-4 and angles.std() > 5


def test_deterministic_under_a_fixed_seed_and_different_between_draws(batch):
    torch.manual_seed(7)
    first = STRONG(batch)
    second = STRONG(batch)
    torch.manual_seed(7)
    again = STRONG(batch)
    assert torch.equal(first, again) and not torch.equal(first, second)


def test_zero_strength_is_the_identity(batch):
    assert Augmentation()(batch) is batch
    assert Augmentation.from_recipe({"rotation": 0, "zoom": 0}) is None
    # A tiny rotation changes almost nothing: no hidden offset or rescaling in the grid.
    torch.manual_seed(0)
    assert torch.allclose(Augmentation(rotation=1e-6)(batch), batch, atol=1e-4)


def test_background_stays_background(batch):
    torch.manual_seed(0)
    out = Augmentation(zoom=0.5, shift=0.2)(batch)
    assert out.amin().item() == pytest.approx(batch.amin().item(), abs=1e-5)


def test_bad_recipe_values():
    with pytest.raises(UserError, match=r"augment: unknown key\(s\) \['flip'\]"):
        Augmentation.from_recipe({"flip": 1})
    with pytest.raises(UserError, match="augment: rotation must not be negative"):
        Augmentation.from_recipe({"rotation": -1})
    with pytest.raises(UserError, match="augment: elastic_sigma 0 is under 1 pixel"):  # was a ZeroDivisionError
        Augmentation.from_recipe({"elastic_alpha": 1, "elastic_sigma": 0})
