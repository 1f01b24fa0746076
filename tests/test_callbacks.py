import time
from types import SimpleNamespace

import pytest
import torch

from src.callbacks import DeviceWeightAveraging, TrainThroughput, warmed_up_ema


@pytest.mark.parametrize(("updates_so_far", "decay"), [(1, 2 / 11), (90, 91 / 100), (100_000, 0.999)])
def test_ema_decay_warms_up_to_the_recipes_value(updates_so_far, decay):
    averaged = [torch.zeros(3)]
    warmed_up_ema(0.999)(averaged, [torch.ones(3)], torch.tensor(updates_so_far))
    assert torch.allclose(averaged[0], torch.full((3,), 1 - decay))


def test_ema_integer_buffers_follow_the_model():
    averaged = [torch.tensor(3), torch.tensor(5)]
    warmed_up_ema(0.999)(averaged, [torch.tensor(40), torch.tensor(41)], torch.tensor(7))
    assert [int(t) for t in averaged] == [40, 41]


def test_train_throughput_counts_the_gpus_queued_work_with_one_sync_per_epoch(monkeypatch):
    # The host runs ahead of a GPU: a clock read after the last step without a sync would miss the
    # queued work (here 50 ms, which synchronize waits for) and overstate images/s.
    syncs = []

    def synchronize(device):
        syncs.append(device)
        time.sleep(0.05)

    monkeypatch.setattr(torch.cuda, "synchronize", synchronize)
    gpu = torch.device("cuda", 0)
    trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=gpu), num_training_batches=4, world_size=1)
    throughput = TrainThroughput()
    throughput.on_train_epoch_start(trainer, None)
    for batch_idx in range(4):
        throughput.on_train_batch_end(trainer, None, None, (torch.zeros(8, 1), torch.zeros(8)), batch_idx)
    assert syncs == [gpu, gpu]  # at the span's start and after its last step, never per step
    assert throughput.images == 32
    assert throughput.seconds >= 0.05


def test_the_weight_average_lives_on_the_training_device():
    # Lightning builds the average before the model moves to the GPU; "meta" stands in for a GPU here.
    from src.models.classifier import DigitClassifier

    averaging = DeviceWeightAveraging(multi_avg_fn=warmed_up_ema(0.999))
    trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("meta")))
    averaging.setup(trainer, DigitClassifier("lenet5"), "fit")
    assert {p.device.type for p in averaging._average_model.parameters()} == {"meta"}
