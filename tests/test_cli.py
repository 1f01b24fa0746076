import lightning.pytorch.trainer.connectors.data_connector as data_connector

from src.train import main


def test_a_many_core_machine_is_not_told_to_add_dataloader_workers(tmp_path, monkeypatch, recwarn):
    # Lightning suggests workers from the core count (none on a 2-core machine, 15 on a 16-core GPU box).
    # Batches are slices of in-memory tensors here, so its advice would only add copying.
    monkeypatch.setattr(data_connector, "suggested_max_num_workers", lambda devices: 15)
    argv = ["--model", "lenet5", "--max-epochs", "1", "--limit-train-batches", "2", "--limit-val-batches", "1"]
    assert main([*argv, "--logdir", str(tmp_path)]) == 0
    assert not [w for w in recwarn if "does not have many workers" in str(w.message)]
