import torch

from src.data.transforms import normalise
from src.hardware import HardwareRequest, plan_hardware, probe_machine
from src.inference import TTA_SHIFTS, ensemble_probabilities, predict_probabilities, shifted
from src.models.registry import build_model


def test_shifted_moves_pixels_and_fills_the_border_with_black():
    image = torch.zeros(1, 4, 4, dtype=torch.uint8)
    image[0, 0, 3] = 200  # top right corner
    assert shifted(image, 1, 0)[0, 1, 3] == 200 and shifted(image, 1, 0).sum() == 200
    assert shifted(image, 0, -1)[0, 0, 2] == 200
    assert shifted(image, -1, 0).sum() == 0 and shifted(image, 0, 1).sum() == 0  # moved out of the frame
    assert torch.equal(shifted(image, 0, 0), image)


def test_tta_is_the_mean_over_the_image_and_its_shifts():
    torch.manual_seed(0)
    model = build_model("lenet5")
    images = torch.randint(0, 256, (7, 28, 28), dtype=torch.uint8)
    views = [predict_probabilities(model, shifted(images, dy, dx), device="cpu") for dy, dx in TTA_SHIFTS]
    with_tta = predict_probabilities(model, images, batch_size=3, device="cpu", tta=True)
    torch.testing.assert_close(with_tta, torch.stack(views).mean(dim=0))
    torch.testing.assert_close(with_tta.sum(dim=1), torch.ones(7))
    assert not torch.allclose(with_tta, views[0])


def test_an_ensemble_is_the_mean_of_its_members():
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.5, 0.5]])
    assert torch.equal(ensemble_probabilities([a, b]), torch.tensor([[0.75, 0.25]]))


def test_inference_lays_the_weights_out_as_training_does_and_gives_the_same_probabilities():
    torch.manual_seed(0)
    model = build_model("deep_bn_cnn").eval()
    images = torch.randint(0, 256, (50, 28, 28), dtype=torch.uint8)
    with torch.inference_mode():
        nchw = model(normalise(images)).softmax(dim=1)
    probabilities = predict_probabilities(model, images, batch_size=16, device="cpu")
    torch.testing.assert_close(probabilities, nchw, atol=1e-5, rtol=1e-4)
    trained_in = plan_hardware(HardwareRequest(accelerator="cpu"), probe_machine()).memory_format
    layout = torch.channels_last if trained_in == "channels_last" else torch.contiguous_format
    second_conv = [p for p in model.parameters() if p.dim() == 4][1]  # the first has one input channel
    assert second_conv.is_contiguous(memory_format=layout)
