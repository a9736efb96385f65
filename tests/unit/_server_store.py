"""Small run stores for the server tests, written with the real store writer (``ns.open_run``).

Every value is computed here from closed-form expressions, so the tests compare what the API returns
with an independent copy of what was written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import netsight as ns
from netsight.render import to_png
from netsight.store import Alert

LAYERS = ["features.0", "features.1", "features.2", "fc"]
METRICS = ["grad_norm", "act_mean", "delta_norm"]
STEPS = 300
SPIKE_STEP = 137
EDGES = np.array([-1.0, -0.1, 0.0, 0.1, 1.0])
TREE = [
    {"name": "", "type": "Net", "parent": None, "params": 1234, "out_shape": [2, 10], "order": -1},
    {
        "name": "features",
        "type": "Sequential",
        "parent": "",
        "params": 1000,
        "out_shape": [2, 8],
        "order": -1,
    },
    {
        "name": "features.0",
        "type": "Conv2d",
        "parent": "features",
        "params": 600,
        "out_shape": [2, 8],
        "order": 0,
    },
    {
        "name": "features.1",
        "type": "ReLU",
        "parent": "features",
        "params": 0,
        "out_shape": [2, 8],
        "order": 1,
    },
    {
        "name": "features.2",
        "type": "Conv2d",
        "parent": "features",
        "params": 400,
        "out_shape": [2, 8],
        "order": 2,
    },
    {"name": "fc", "type": "Linear", "parent": "", "params": 234, "out_shape": [2, 10], "order": 3},
]
ATTENTION_HTML = (
    "<!doctype html><html><body><p id='a'>attention page</p>"
    "<script>document.title='ok'</script></body></html>"
)


def loss_at(step: int) -> float:
    return 100.0 if step == SPIKE_STEP else 2.0 / (1.0 + step)


def layer_values(step: int, layers: list[str] | None = None) -> np.ndarray:
    """[L, M]: grad_norm = (i+1) 10^(-step/100); act_mean = 0.1 i + step/1000; delta = 2^-(L-i) (1+step)."""
    n = len(layers or LAYERS)
    i = np.arange(n, dtype=np.float64)
    return np.stack(
        [(i + 1) * 10.0 ** (-step / 100.0), 0.1 * i + step / 1000.0, 2.0 ** (-(n - i)) * (1 + step)], axis=1
    )


def hist_counts(step: int, n_layers: int) -> np.ndarray:
    """[L, E+1] counts."""
    base = np.arange(len(EDGES) + 1, dtype=np.float64)
    return np.stack([base * (layer + 1) + step for layer in range(n_layers)])


def image(step: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed * 1000 + step)
    return rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)


def write_run(  # noqa: PLR0917 - test helper, names overridable
    store_dir: Path,
    name: str,
    layers: list[str] | None = None,
    config: dict | None = None,
    metrics: list[str] | None = None,
    scalar: str = "loss",
) -> None:
    """A finished run with every kind of record the dashboard shows (names overridable)."""
    import torch

    layers = layers or LAYERS
    metrics = metrics or METRICS
    with ns.open_run(store_dir, name=name, config=config or {"lr": 0.1, "batch": 32}) as run:
        run.log_module_tree(
            TREE
            if layers == LAYERS
            else [
                {"name": n, "type": "Linear", "parent": None, "params": 1, "out_shape": None, "order": i}
                for i, n in enumerate(layers)
            ]
        )
        for step in range(STEPS):
            run.log({scalar: loss_at(step), "acc": step / STEPS}, step=step)
            run.log_layers(step, layers, metrics, layer_values(step, layers))
            if step % 50 == 0:
                run.log_histograms(
                    step, "grad", layers, torch.tensor(EDGES), torch.tensor(hist_counts(step, len(layers)))
                )
        for step in (0, 100, 200):
            for k, layer in enumerate(layers[:2]):
                run.log_image(
                    step,
                    f"actmap/{layer}",
                    to_png(torch.from_numpy(image(step, k))),
                    layer=layer,
                    kind="activation_map",
                )
        run.log_explanation(250, "grad_cam", 0, to_png(torch.from_numpy(image(250, 7))), meta={"target": 3})
        run.log_explanation(250, "saliency", 0, to_png(torch.from_numpy(image(250, 8))), meta={"target": 3})
        run.log_alert(
            Alert(
                step=120,
                layer=layers[0],
                rule="vanishing_gradient",
                value=1e-7,
                message=f"{layers[0]} gradient vanished",
                severity="warning",
            )
        )
        run.log_alert(
            Alert(
                step=40, layer=layers[-1], rule="dead_units", value=0.9, message="90% dead", severity="error"
            )
        )
        run.log_text("attention_html/layer0", ATTENTION_HTML)
        run.log_text("notes", "not an attention page")
