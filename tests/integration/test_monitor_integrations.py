"""The trainer callbacks with the real libraries on tiny models: statistics land in the store at the
trainer's steps, the trainer's scalars too, and the model is left without hooks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import netsight as ns


def tiny_data(n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 6, generator=g)
    return x, (x[:, 0] > 0).long()


# pytorch_lightning 2.6 uses a torch pytree class that torch 2.14 deprecates; not ours to fix
@pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated:FutureWarning")
def test_lightning_callback(tmp_path: Path) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    from netsight.monitor.integrations.lightning import NetsightCallback

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))

        def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
            x, y = batch
            loss = F.cross_entropy(self.net(x), y)
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    x, y = tiny_data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    module = Module()
    callback = NetsightCallback(tmp_path, name="pl", stats=1)
    trainer = pl.Trainer(
        max_steps=6,
        accumulate_grad_batches=2,
        callbacks=[callback],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
    )
    trainer.fit(module, loader)
    assert ns.hooks_on(module) == {}
    r = ns.store.open(tmp_path).run("pl")
    assert r.info.status == "finished"
    names, steps, values = r.layer_matrix("grad_norm", layers=["net.0", "net.2"])
    assert names == ["net.0", "net.2"]
    assert list(steps) == list(range(6))  # one row per optimizer step, 2 batches each
    assert np.isfinite(values).all()
    assert (values > 0).all()
    assert "train_loss" in r.scalar_keys()
    assert r.alerts() == []
    assert {n["name"] for n in r.module_tree()} >= {"net", "net.0", "net.1", "net.2"}


def test_hf_trainer_callback(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    from netsight.monitor.integrations.hf import NetsightTrainerCallback

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 2))

        def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
            logits = self.body(x)
            out = {"logits": logits}
            if labels is not None:
                out["loss"] = F.cross_entropy(logits, labels)
            return out

    x, y = tiny_data()
    data = [{"x": x[i], "labels": y[i]} for i in range(len(x))]
    model = Model()
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=5,
        per_device_train_batch_size=4,
        learning_rate=0.05,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
    )
    callback = NetsightTrainerCallback(tmp_path / "runs", name="hf", stats=1)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=data, callbacks=[callback])
    trainer.train()
    assert ns.hooks_on(model) == {}
    r = ns.store.open(tmp_path / "runs").run("hf")
    names, steps, values = r.layer_matrix("update_ratio", layers=["body.0", "body.2"])
    assert names == ["body.0", "body.2"]
    assert list(steps) == list(range(5))
    assert np.isfinite(values[:, 1:]).all()
    assert (values[:, 1:] > 0).all()  # the weights moved at every optimizer step
    assert "loss" in r.scalar_keys()
    assert r.alerts() == []
