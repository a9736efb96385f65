"""The README's tour, as a file the docs test runs (random weights, offline).

It writes its run store to ./netsight-runs, where the README's shell lines after it look.
"""

import torch
import torchvision

import netsight as ns

model = torchvision.models.resnet18(num_classes=10).eval()
x = torch.randn(4, 3, 224, 224)

# 1. Capture: activations and gradients by module path or glob, full or reduced on the device
with ns.capture(model, layers=["layer*.*.conv1", "fc"], grads=True) as cap:
    model(x)[:, 3].sum().backward()
act, grad = cap["layer4.0.conv1"].activation, cap["layer4.0.conv1"].grad
with ns.capture(model, reduce="stats", max_bytes=50_000_000) as cap:  # memory stays bounded
    model(x)
names, table = cap.stacked("stats")  # [layers, 9] on the device: one transfer
with ns.capture(model, layers="layer1.0.conv1") as cap:
    model(x)
grid = ns.render.feature_grid(cap["layer1.0.conv1"], k=16)  # activation maps from one forward

# 2. Explain: one API over gradient, CAM, path, perturbation and model-agnostic methods
ex = ns.explain(model, x, target=3, method="grad_cam")
print(ns.list_methods("*cam*"))
picture = ex.overlay(x)  # uint8 RGB [B, H, W, 3], computed in torch

# 3. Monitor: one line in the training loop, stored in an embedded SQLite run store
store_dir = "netsight-runs"  # a folder here: `netsight serve netsight-runs` shows it
model.train()
opt = torch.optim.SGD(model.parameters(), lr=0.01)
with ns.open_run(store_dir, name="my-run") as run, ns.watch(model, optimizer=opt, run=run):
    for step in range(3):
        loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 3]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        run.log({"loss": loss}, step=step)
print("stored", run.name, "in", store_dir)  # a name already taken in the store gets a suffix: my-run-2
print(ns.store.open(store_dir).run(run.name).layer_matrix("grad_norm")[0][:3])
