"""The demo as a library call: train, explain, report, and keep the trained model.

python docs/examples/demo_from_python.py
"""

from __future__ import annotations

import netsight.demo

result = netsight.demo.run(
    epochs=1,
    train_size=2048,  # the demo's default is 8000 training / 2000 test digits, 3 epochs, batches of 64
    test_size=256,
    batch_size=32,  # 64 steps: enough to learn (16 steps of 64 stay near chance, about 10 %)
    serve=False,  # True starts the live dashboard and prints its URL
    methods=("saliency", "grad_cam"),
    store="netsight-runs",
    progress=False,
)
print(f"test accuracy {result.test_accuracy:.1%} after {result.steps} steps")
print("run", result.run, "in", result.store, "report", result.report)
model = result.model  # the trained DemoCNN, in eval mode
print(model)
