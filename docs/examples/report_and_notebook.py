"""A stored run as a self-contained HTML report, and as the card a notebook shows.

python docs/examples/report_and_notebook.py
"""

from __future__ import annotations

import numpy as np

import netsight as ns
from netsight.render.notebook import run_html
from netsight.render.report import write_report

# Any run in a store will do; here a small one is written directly.
with ns.open_run("netsight-runs", name="tiny", config={"note": "hand-written"}) as run:
    layers = ["conv", "fc"]
    for step in range(1, 51):
        run.log({"loss": 1.0 / step}, step=step)
        grad_norms = np.array([[0.5 / step], [2.0 / step]], dtype=np.float32)  # [layers, metrics]
        run.log_layers(step, layers, ["grad_norm"], grad_norms)
    name = run.name

path = write_report("netsight-runs", name, "tiny-report.html")  # images inline, works offline
print("wrote", path, path.stat().st_size, "bytes")

reader = ns.store.open("netsight-runs").run(name)
card = run_html(reader)  # what a RunReader shows in Jupyter
print(card[:80])
