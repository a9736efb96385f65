"""Attention in a transformer: capture every head's map, roll attention out, and draw it.

A small ``nn.TransformerEncoder`` with random weights keeps this fast and offline;
``attention_minilm.py`` does the same on a real pretrained sentence model.

    python docs/examples/attention_transformer.py
"""

from __future__ import annotations

import torch
from torch import nn

import netsight as ns
from netsight.attention import html


class Classifier(nn.Module):
    def __init__(self, vocab: int = 100, d: int = 32, heads: int = 4, layers: int = 2) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        layer = nn.TransformerEncoderLayer(d, heads, dim_feedforward=64, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d, 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(ids))[:, 0])


model = Classifier().eval()
ids = torch.randint(0, 100, (1, 8))
tokens = ["[CLS]", "the", "cat", "sat", "on", "the", "mat", "."]

maps = ns.attention(model, ids, tokens=tokens)  # AttentionMaps
for name in maps.names:
    print(name, tuple(maps[name].shape))  # [batch, heads, query, key], rows sum to 1

ex = ns.explain(model, ids, method="attention_rollout")  # token relevance for the first position
print([f"{t}:{v:.2f}" for t, v in zip(tokens, ex.attributions[0].tolist(), strict=True)])

with open("head_view.html", "w", encoding="utf-8") as fh:
    fh.write(html.head_view(maps))  # BertViz-style token-to-token view, self-contained
