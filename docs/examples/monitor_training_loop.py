"""Monitor your own training loop: one ``ns.watch`` line, a run store, and reading it back.

python docs/examples/monitor_training_loop.py
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import netsight as ns
from netsight.data import load_mnist
from netsight.render.report import write_report

x, y = load_mnist()
x, y = x[:1024], y[:1024]
model = nn.Sequential(
    nn.Conv2d(1, 8, 3, padding=1),
    nn.BatchNorm2d(8),
    nn.ReLU(),
    nn.MaxPool2d(2),
    nn.Flatten(),
    nn.Linear(8 * 14 * 14, 10),
)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)

run = ns.open_run("netsight-runs", name="my-cnn", config={"lr": 1e-3})
with run, ns.watch(model, optimizer=opt, run=run):  # collects on every opt.step()
    for step in range(1, 33):
        idx = torch.randint(0, 1024, (32,))
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        run.log({"loss": loss}, step=step)  # a tensor is fine: no .item() in the loop

# Reading: the same store the dashboard (netsight serve netsight-runs) shows.
r = ns.store.open("netsight-runs").run(run.name)
steps, losses = r.series("loss")
print(f"{len(steps)} steps, loss {losses[0]:.3f} -> {losses[-1]:.3f}")
names, steps, grad_norm = r.layer_matrix("grad_norm")  # [layers, steps]: the gradient flow
print(names, grad_norm.shape)
print(r.layer_metrics())
print("alerts:", r.alerts())
write_report("netsight-runs", run.name, "my-cnn-report.html")  # one self-contained HTML file
