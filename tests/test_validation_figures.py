from types import SimpleNamespace

import matplotlib.pyplot as plt
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils._python_dispatch import TorchDispatchMode

from src.data.transforms import normalise
from src.figures import image_grid_figure
from src.validation_figures import ValidationFigures


def logits_for(predicted: list[int], confidence: list[float]) -> torch.Tensor:
    """Logits whose softmax gives each row `confidence` on `predicted`, the rest spread evenly."""
    probabilities = torch.tensor([[(1 - c) / 9] * 10 for c in confidence])
    probabilities[range(len(predicted)), predicted] = torch.tensor(confidence)
    return probabilities.log()


def test_the_epochs_figures_count_every_batch_and_show_the_most_confident_mistakes(tmp_path, monkeypatch):
    shown = {}

    def record_grid(images, captions, title):
        shown.update(images=images, captions=captions, title=title)
        return image_grid_figure(images, captions, title)

    monkeypatch.setattr("src.figures.image_grid_figure", record_grid)
    logger = TensorBoardLogger(tmp_path)
    trainer = SimpleNamespace(
        sanity_checking=False,
        is_global_zero=True,
        world_size=1,
        logger=logger,
        current_epoch=0,
        global_step=7,
        strategy=SimpleNamespace(reduce=lambda tensor, reduce_op: tensor),
    )
    callback = ValidationFigures(shown=2)
    callback.on_validation_epoch_start(trainer, SimpleNamespace(device=torch.device("cpu")))
    images = torch.arange(5 * 784).reshape(5, 28, 28).remainder(256).to(torch.uint8)
    batches = [  # (labels, predicted, confidence): three mistakes, at 0.6, 0.9 and 0.5
        ([0, 1, 2], [0, 1, 5], [0.8, 0.7, 0.6]),
        ([3, 4], [7, 9], [0.9, 0.5]),
    ]
    for index, (labels, predicted, confidence) in enumerate(batches):
        batch_images = images[:3] if index == 0 else images[3:]
        batch = (normalise(batch_images), torch.tensor(labels))
        callback.on_validation_batch_end(trainer, None, logits_for(predicted, confidence), batch, index)
    callback.on_validation_epoch_end(trainer, None)

    assert callback.matrix.sum() == 5 and callback.matrix.trace() == 2
    assert callback.matrix[2, 5] == callback.matrix[3, 7] == callback.matrix[4, 9] == 1
    assert shown["captions"] == ["true 3 -> 7 (90%)", "true 2 -> 5 (60%)"]
    assert shown["title"] == "Epoch 1: 3 validation mistakes, most confident first"
    assert torch.equal(shown["images"], images[[3, 2]])  # the images as stored, recovered from the inputs
    logger.experiment.flush()
    events = EventAccumulator(logger.log_dir)
    events.Reload()
    assert [image.step for image in events.Images("val/mistakes")] == [7]
    assert [image.step for image in events.Images("val/confusion_matrix")] == [7]


def test_under_ddp_the_mistakes_shown_are_the_most_confident_of_every_process(tmp_path, monkeypatch):
    captions = []
    monkeypatch.setattr(
        "src.figures.image_grid_figure", lambda images, shown, title: captions.extend(shown) or plt.figure()
    )
    sent_by_rank_1 = []

    def validate(rank: int, labels: list[int], predicted: list[int], confidence: list[float], all_gather) -> None:
        trainer = SimpleNamespace(
            sanity_checking=False,
            is_global_zero=rank == 0,
            world_size=2,
            logger=TensorBoardLogger(tmp_path),
            current_epoch=0,
            global_step=3,
            strategy=SimpleNamespace(reduce=lambda tensor, reduce_op: tensor, all_gather=all_gather),
        )
        callback = ValidationFigures(shown=2)
        callback.on_validation_epoch_start(trainer, SimpleNamespace(device=torch.device("cpu")))
        batch = (normalise(torch.zeros(len(labels), 1, 28, 28, dtype=torch.uint8)), torch.tensor(labels))
        callback.on_validation_batch_end(trainer, None, logits_for(predicted, confidence), batch, 0)
        callback.on_validation_epoch_end(trainer, None)

    # Rank 1 validated one image, a mistake surer than any of rank 0's; it pads its share to 2 images.
    validate(1, [4], [9], [0.95], lambda tensor: sent_by_rank_1.append(tensor) or torch.stack([tensor, tensor]))
    assert [len(tensor) for tensor in sent_by_rank_1] == [2, 2, 2, 2]
    validate(0, [0, 1, 2], [5, 6, 7], [0.6, 0.7, 0.5], lambda tensor: torch.stack([tensor, sent_by_rank_1.pop(0)]))
    assert captions == ["true 4 -> 9 (95%)", "true 1 -> 6 (70%)"]


# Each of these makes a GPU wait for the host; on a CPU they are still dispatched, so they can be seen here.
HOST_READS = {"aten._local_scalar_dense", "aten.bincount", "aten.nonzero", "aten.masked_select", "aten.unique"}


class DispatchedOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.add(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


def test_a_validation_batch_reads_nothing_back_from_the_device():
    callback = ValidationFigures()
    trainer = SimpleNamespace(sanity_checking=False)
    callback.on_validation_epoch_start(trainer, SimpleNamespace(device=torch.device("cpu")))
    batch = (torch.randn(100, 1, 28, 28), torch.randint(0, 10, (100,)))
    with DispatchedOps() as dispatched:
        callback.on_validation_batch_end(trainer, None, torch.randn(100, 10), batch, 0)
    assert dispatched.ops & HOST_READS == set()
    assert int(callback.matrix.sum()) == 100
