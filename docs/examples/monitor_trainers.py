"""Watch a training run driven by PyTorch Lightning or by Hugging Face's ``Trainer``: one callback each.

python docs/examples/monitor_trainers.py

Needs ``pip install 'netsight[lightning]'`` (or pytorch-lightning) and ``'netsight[hf]'``; the
development extra has both. Runs offline on 2,048 shipped MNIST digits in about half a minute.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

import netsight as ns
from netsight.data import load_mnist

# pytorch_lightning 2.6 calls a torch pytree check that torch 2.14 deprecates (not netsight's warning)
warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")

x, y = load_mnist()
order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:2048]
x, y = x[order], y[order]  # the file is sorted by class


def make_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 14 * 14, 32),
        nn.ReLU(),
        nn.Linear(32, 10),
    )


# -- PyTorch Lightning ------------------------------------------------------------------------------
try:
    import lightning.pytorch as pl
except ImportError:  # the older standalone package
    import pytorch_lightning as pl

from netsight.monitor.integrations.lightning import NetsightCallback  # noqa: E402 - after pl


class Classifier(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = make_net()

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, labels = batch
        loss = F.cross_entropy(self.net(images), labels)
        self.log("train_loss", loss)  # the callback writes what the module logs to the same run
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=1e-3)


loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32, shuffle=True)
callback = NetsightCallback("netsight-runs", name="lightning-cnn", stats=5)  # options go to ns.watch
trainer = pl.Trainer(
    max_epochs=1,
    accumulate_grad_batches=2,  # one netsight step per optimizer step, as trainer.global_step counts
    callbacks=[callback],
    logger=False,
    enable_checkpointing=False,
    enable_progress_bar=False,
    enable_model_summary=False,
    accelerator="cpu",
)
trainer.fit(Classifier(), loader)

r = ns.store.open("netsight-runs").run("lightning-cnn")
names, steps, grad_norm = r.layer_matrix("grad_norm")
print(f"Lightning: {len(steps)} optimizer steps of {len(names)} layers, status {r.info.status}")
print("  logged scalars:", r.scalar_keys(), "alerts:", r.alerts())

# -- Hugging Face Trainer ---------------------------------------------------------------------------
import transformers  # noqa: E402 - each part imports its trainer where it starts

from netsight.monitor.integrations.hf import NetsightTrainerCallback  # noqa: E402


class HFClassifier(nn.Module):
    """Any nn.Module whose forward returns a dict with a ``loss`` when given ``labels`` will do."""

    def __init__(self) -> None:
        super().__init__()
        self.net = make_net()

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        logits = self.net(images)
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = F.cross_entropy(logits, labels)
        return out


args = transformers.TrainingArguments(
    output_dir="hf-out",
    max_steps=32,
    per_device_train_batch_size=32,
    learning_rate=1e-3,
    logging_steps=4,
    max_grad_norm=1.0,  # the monitor reads the gradients after clipping, before the update
    report_to=[],
    save_strategy="no",
    use_cpu=True,
    disable_tqdm=True,
)
rows = [{"images": x[i], "labels": y[i]} for i in range(len(x))]
callback_hf = NetsightTrainerCallback("netsight-runs", name="hf-cnn", stats=5)
hf_trainer = transformers.Trainer(HFClassifier(), args, train_dataset=rows, callbacks=[callback_hf])
hf_trainer.train()

r = ns.store.open("netsight-runs").run("hf-cnn")
names, steps, ratio = r.layer_matrix("update_ratio")  # measured on the stats=5 steps
print(f"HF Trainer: {len(steps)} steps with update ratios; the trainer's logs: {r.scalar_keys()}")
print("  alerts:", r.alerts())
