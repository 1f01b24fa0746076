import re

import lightning.pytorch.trainer.connectors.data_connector as data_connector

from src.train import main


def test_a_many_core_machine_is_not_told_to_add_dataloader_workers(tmp_path, monkeypatch, recwarn):
    # Lightning suggests workers from the core count (none on a 2-core machine, 15 on a 16-core GPU box).
    # Batches are slices of in-memory tensors here, so its advice would only add copying.
    monkeypatch.setattr(data_connector, "suggested_max_num_workers", lambda devices: 15)
    argv = ["--model", "lenet5", "--max-epochs", "1", "--limit-train-batches", "2", "--limit-val-batches", "1"]
    assert main([*argv, "--logdir", str(tmp_path)]) == 0
    assert not [w for w in recwarn if "does not have many workers" in str(w.message)]


def test_nothing_imports_the_old_pytorch_lightning_package():
    # Mixing it with lightning.pytorch fails as "model must be a LightningModule": two Lightnings.
    from tests.conftest import ROOT

    sources = [path for folder in ("src", "scripts", "tests") for path in (ROOT / folder).rglob("*.py")]
    assert len(sources) > 50
    offenders = [str(p) for p in sources if re.search(r"^\s*(import|from)\s+pytorch_lightning\b", p.read_text(), re.M)]
    assert offenders == []
