import time
from types import SimpleNamespace

import torch

from src.callbacks import TrainThroughput


def test_train_throughput_counts_the_gpus_queued_work_with_syncs_only_at_the_epochs_ends(monkeypatch):
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
