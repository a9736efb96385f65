"""What the perturbation methods share: interpretable features, fill values and batched masked forwards.

LIME (Ribeiro, Singh, Guestrin 2016) and KernelSHAP (Lundberg & Lee 2017) explain a prediction with
*interpretable features*: groups of input elements that are switched on (kept) or off (replaced by a
baseline) together. :func:`make_features` builds the same groups for both:

- images ``[B, C, H, W]``: SLIC superpixels (Achanta et al. 2012, scikit-image, imported lazily; a one-off
  preprocessing step per image) or a regular grid of cells; every channel of a pixel moves together;
- token ids ``[B, T]`` (integer): one feature per token, switched off by a baseline (mask / pad) id;
- tabular rows ``[B, F]`` (floating): one feature per column, switched off by a baseline or by the rows
  of a background set (the prediction is then averaged over the background rows);
- or a user ``feature_mask`` (like Captum's): feature ids per element, ``-1`` for never perturbed.

:func:`coalition_scores` evaluates the model on a set of coalitions (binary vectors over the features);
:func:`masked_forwards` is the one loop every perturbation method (occlusion, RISE, LIME, KernelSHAP)
runs its model calls through: one flat stream of perturbed items, built per chunk on the input's device,
chunked to the free memory (:func:`~netsight.explain._common.chunk_size`), scored for the target.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from netsight._progress import progress_bar
from netsight.errors import ArgumentError, ExplainError, TargetError

from ._common import (
    Target,
    TargetSpec,
    chunk_size,
    logits,
    prepare_target,
    probe,
    resolve_chunk,
    score,
    session,
    with_target,
)
from ._forward import NO_ARGS, ForwardArgs

__all__ = [
    "FEATURE_KINDS",
    "Features",
    "GroupScores",
    "coalition_scores",
    "fill_values",
    "input_kind",
    "make_features",
    "masked_forwards",
    "reference_scores",
    "rows_limit",
    "rows_per_chunk",
    "score_feature_groups",
    "sizing_args",
    "spread_features",
]

#: How a perturbation method may group input elements into features.
FEATURE_KINDS = ("slic", "grid", "tokens", "columns")

Build = Callable[[int, int], tuple[torch.Tensor, torch.Tensor]]  # ids lo..hi -> (inputs [m, *S], owner [m])
Blend = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor
]  # keep, on, off, out


@dataclass(frozen=True)
class Features:
    """Interpretable features of a batch.

    Attributes:
        labels: ``[B, *S']`` long, broadcastable to the inputs ``[B, *S]``: the feature id of every
            input element (``0 .. counts[b] - 1``), or ``-1`` for elements that are never perturbed.
            Images: ``[B, 1, H, W]``, one id per pixel, shared by the channels.
        counts: the number of features ``M_b`` of each sample.
        kind: ``"slic"``, ``"grid"``, ``"tokens"``, ``"columns"`` or ``"mask"`` (a user feature mask).
    """

    labels: torch.Tensor
    counts: tuple[int, ...]
    kind: str

    def groups(self) -> list[tuple[int, list[int]]]:
        """Samples grouped by feature count: ``[(M, [sample indices])]`` (they can share coalitions)."""
        out: dict[int, list[int]] = {}
        for b, m in enumerate(self.counts):
            out.setdefault(m, []).append(b)
        return sorted(out.items())

    def spread(self, values: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
        """Per-feature values ``[B, M_max]`` (each row padded past its ``M_b``) laid out on the elements:
        ``[B, *shape]``, 0 where the label is ``-1``. One gather for the whole batch."""
        b, m = values.shape
        ext = torch.cat([values, values.new_zeros(b, 1)], dim=1)  # [B, M_max + 1]; the last reads 0
        lab = torch.where(self.labels < 0, m, self.labels)  # [B, *S']
        out = ext.gather(1, lab.flatten(1)).view(lab.shape)  # [B, *S']
        return out.expand(b, *shape).contiguous()

    def unpad(self, values: torch.Tensor) -> list[torch.Tensor]:
        """Rows of ``[B, M_max]`` cut to each sample's ``M_b`` (views)."""
        return [row[:m] for row, m in zip(values.unbind(0), self.counts, strict=True)]


def input_kind(x: torch.Tensor) -> str:
    """``"image"`` for ``[B, C, H, W]`` (floating, or integer such as uint8 pixels for a model that
    scales them itself), ``"tokens"`` for integer ``[B, T]``, ``"tabular"`` for floating ``[B, F]``;
    anything else is an error that says what to pass."""
    if x.dim() == 4 and not x.is_complex() and x.dtype != torch.bool:
        return "image"
    if x.dim() == 2 and not x.is_floating_point() and not x.is_complex() and x.dtype != torch.bool:
        return "tokens"
    if x.dim() == 2 and x.is_floating_point():
        return "tabular"
    raise ArgumentError(
        f"inputs: cannot tell how to group a {x.dtype} tensor of shape {tuple(x.shape)} into features. "
        "Pass images [B, C, H, W], token ids [B, T] (integer) or tabular rows [B, F] (float), "
        "or a feature_mask= giving the feature id of every element."
    )


def _check_grid(grid: Any, h: int, w: int) -> tuple[int, int]:
    cells = (grid, grid) if isinstance(grid, int) and not isinstance(grid, bool) else grid
    if (
        not isinstance(cells, (tuple, list))
        or len(cells) != 2
        or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in cells)
    ):
        raise ArgumentError(
            f"grid: expected cells per side, an int or (rows, cols) of positive ints, got {grid!r}. "
            "For example grid=8."
        )
    gh, gw = int(cells[0]), int(cells[1])
    if gh > h or gw > w:
        raise ArgumentError(f"grid: {(gh, gw)} cells do not fit an image of {h}x{w} pixels; use fewer cells.")
    return gh, gw


def _slic(x: torch.Tensor, n_segments: int, compactness: float) -> torch.Tensor:
    """SLIC superpixels of each image of ``x`` ``[B, C, H, W]`` -> labels ``[B, H, W]`` (0-based)."""
    try:
        from skimage.segmentation import slic
    except ImportError as exc:
        raise ExplainError(
            "features: 'slic' needs scikit-image (pip install 'netsight[explain]'); or pass "
            "features='grid' for a regular grid of cells."
        ) from exc
    import numpy as np

    imgs = x.detach().float()
    lo = imgs.amin(dim=(1, 2, 3), keepdim=True)
    hi = imgs.amax(dim=(1, 2, 3), keepdim=True)
    scaled = ((imgs - lo) / (hi - lo).clamp_min(1e-12)).permute(0, 2, 3, 1).cpu().numpy()  # [B, H, W, C]
    out = []
    for img in scaled:  # one-off preprocessing per image (scikit-image runs on the host)
        if img.shape[-1] == 1:
            seg = slic(img[..., 0], n_segments=n_segments, compactness=compactness, channel_axis=None)
        else:
            seg = slic(img, n_segments=n_segments, compactness=compactness, channel_axis=-1)
        out.append(np.asarray(seg, dtype=np.int64))
    return torch.from_numpy(np.stack(out)).to(x.device)


def _renumber(labels: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Per sample, map feature ids (any integers, ``< 0`` = fixed) to ``0 .. M_b - 1``."""
    out = torch.empty(labels.shape, dtype=torch.long, device=labels.device)
    counts = []
    for b in range(labels.shape[0]):
        lab = labels[b]
        free = lab >= 0
        ids, inv = torch.unique(lab[free], return_inverse=True)
        row = torch.full_like(lab, -1)
        row[free] = inv
        out[b] = row
        counts.append(int(ids.numel()))
    return out, tuple(counts)


def make_features(
    x: torch.Tensor,
    features: str | None = None,
    *,
    feature_mask: torch.Tensor | None = None,
    n_segments: int = 50,
    compactness: float = 10.0,
    grid: int | Sequence[int] = 8,
) -> Features:
    """Group the elements of ``x`` ``[B, *S]`` into interpretable features.

    ``features``: ``None`` (the natural grouping: ``"slic"`` for images, ``"tokens"`` for token ids,
    ``"columns"`` for tabular rows), or one of :data:`FEATURE_KINDS`. ``feature_mask``: instead, the
    feature id of every element (broadcastable to ``x``; ``-1`` = never perturbed, e.g. special tokens).
    ``n_segments``/``compactness``: SLIC's parameters; ``grid``: cells per side for ``"grid"``.
    """
    if feature_mask is not None:
        if features is not None:
            raise ArgumentError(
                f"features: got both features={features!r} and a feature_mask; pass one of them."
            )
        if not isinstance(feature_mask, torch.Tensor) or feature_mask.is_floating_point():
            raise ArgumentError(
                "feature_mask: expected an integer tensor of feature ids broadcastable to the inputs, "
                f"got {type(feature_mask).__name__}"
                + (f" of dtype {feature_mask.dtype}" if isinstance(feature_mask, torch.Tensor) else "")
                + "."
            )
        try:
            fm = feature_mask.to(device=x.device, dtype=torch.long)
            if fm.dim() > x.dim():
                raise RuntimeError("more dimensions than the inputs")
            fm = fm.view((1,) * (x.dim() - fm.dim()) + tuple(fm.shape))
            if any(f not in (1, n) for f, n in zip(fm.shape, x.shape, strict=True)):
                raise RuntimeError("does not broadcast")
            lab = fm.expand(x.shape[0], *fm.shape[1:])
        except RuntimeError as exc:
            raise ArgumentError(
                f"feature_mask: shape {tuple(feature_mask.shape)} does not broadcast to the inputs' shape "
                f"{tuple(x.shape)}; pass one id per element (or per element of one sample)."
            ) from exc
        labels, counts = _renumber(lab)
        kind = "mask"
    else:
        natural = {"image": "slic", "tokens": "tokens", "tabular": "columns"}[input_kind(x)]
        kind = natural if features is None else features
        if kind not in FEATURE_KINDS:
            raise ArgumentError(
                f"features: {kind!r} is not a feature grouping; use one of "
                f"{', '.join(repr(k) for k in FEATURE_KINDS)}, or pass feature_mask=."
            )
        if kind in ("slic", "grid") and input_kind(x) != "image":
            raise ArgumentError(
                f"features: {kind!r} groups the pixels of images [B, C, H, W]; the inputs have "
                f"shape {tuple(x.shape)} and dtype {x.dtype}. Use features={natural!r}."
            )
        if kind in ("tokens", "columns") and x.dim() != 2:
            raise ArgumentError(
                f"features: {kind!r} needs [B, T] / [B, F] inputs, got shape {tuple(x.shape)}. "
                f"Use features={natural!r} or a feature_mask."
            )
        b = x.shape[0]
        if kind == "slic":
            if not isinstance(n_segments, int) or n_segments < 1:
                raise ArgumentError(f"n_segments: expected a positive int, got {n_segments!r}.")
            seg, counts = _renumber(_slic(x, n_segments, compactness))
            labels = seg[:, None]
        elif kind == "grid":
            h, w = x.shape[-2:]
            gh, gw = _check_grid(grid, h, w)
            rows = torch.arange(h, device=x.device) * gh // h
            cols = torch.arange(w, device=x.device) * gw // w
            cell = rows[:, None] * gw + cols[None, :]  # [H, W]
            labels = cell.expand(b, 1, h, w)
            counts = (gh * gw,) * b
        else:  # tokens or columns: one feature per position
            n = x.shape[1]
            labels = torch.arange(n, device=x.device).expand_as(x)
            counts = (n,) * b
    if min(counts) < 1:
        raise ArgumentError(
            "feature_mask: a sample has no feature to perturb (every id is -1); give it at least one id >= 0."
        )
    return Features(labels=labels, counts=counts, kind=kind)


def fill_values(x: torch.Tensor, baseline: Any, background: torch.Tensor | None) -> torch.Tensor:
    """What a switched-off element becomes: ``[B, K, *S]`` (an expanded view where possible).

    ``baseline``: a number (token inputs: a token id) or a tensor broadcastable to ``x`` (or to one
    sample) -> ``K = 1``. ``background``: ``[K, *S]`` rows whose predictions are averaged (KernelSHAP's
    background data set) -> ``K`` rows; it replaces ``baseline``.
    """
    b, shape = x.shape[0], tuple(x.shape[1:])
    if background is not None:
        if not isinstance(background, torch.Tensor) or tuple(background.shape[1:]) != shape:
            got = (
                tuple(background.shape) if isinstance(background, torch.Tensor) else type(background).__name__
            )
            raise ArgumentError(
                f"background: expected a tensor [K, {', '.join(map(str, shape))}] of K reference rows, got "
                f"{got}. Pass a few rows of your data (e.g. data[:50])."
            )
        if background.shape[0] < 1:
            raise ArgumentError("background: it has no rows; pass at least one reference row.")
        bg = background.to(device=x.device, dtype=x.dtype)
        return bg[None].expand(b, *bg.shape)
    if isinstance(baseline, torch.Tensor):
        try:
            base = baseline.to(device=x.device, dtype=x.dtype).expand_as(x)
        except RuntimeError as exc:
            raise ArgumentError(
                f"baseline: a tensor of shape {tuple(baseline.shape)} does not broadcast to the inputs' "
                f"shape {tuple(x.shape)}. Pass one of that shape (or one sample's shape)."
            ) from exc
        return base[:, None]
    if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        if not x.is_floating_point() and not float(baseline).is_integer():
            raise ArgumentError(
                f"baseline: {baseline!r} for integer inputs (token ids); pass a token id such as the pad "
                "or [MASK] id."
            )
        return torch.full((1, 1, *shape), baseline, dtype=x.dtype, device=x.device).expand(b, 1, *shape)
    raise ArgumentError(
        f"baseline: expected a number or a tensor broadcastable to the inputs, got "
        f"{type(baseline).__name__} {baseline!r}."
    )


# -- model calls ------------------------------------------------------------------------------------
def _scores(output: Any, target: Target, probability: bool) -> torch.Tensor:
    """The explained score per item: the target's logit (or probability), or the callable's result."""
    if probability:
        output = torch.softmax(logits(output).float(), dim=-1)
    return score(output, target).float()


def reference_scores(
    model: nn.Module,
    x: torch.Tensor,
    target: TargetSpec,
    *,
    chunk: int,
    probability: bool = False,
    fwd: ForwardArgs = NO_ARGS,
) -> tuple[torch.Tensor, Target]:
    """Scores ``[B]`` of the unperturbed inputs and the resolved target (classes ``[B]`` or a callable).

    ``target=None`` resolves to each sample's predicted class on the *unperturbed* input, which every
    perturbed copy of that sample is then scored for. ``fwd``: the forward's keyword arguments.
    """
    t = prepare_target(target, x.shape[0], x.device)

    def run(xc: torch.Tensor, tc: Target, kw: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            out = model(xc, **kw)
            tt = resolve_chunk(out, tc)
            classes = tt if isinstance(tt, torch.Tensor) else torch.full((xc.shape[0],), -1, device=x.device)
            return _scores(out, tt, probability), classes

    s, classes = with_target(run, x, t, chunk=chunk, fwd=fwd)
    return s, (classes if isinstance(t, torch.Tensor) else t)


_CPU_CHUNK_BYTES = 256 << 20  # the most activations one CPU chunk may hold
_CPU_CACHE_BYTES = 2 << 20  # a thread's share of a chunk that stays in its core's L2 cache (1-2 MiB on x86)
_CPU_MIN_ITEMS = 8  # big items (a ResNet image): a few per forward, never just one
_CPU_MAX_ITEMS = 8192
_SEARCH_BELOW_ITEMS = 256  # masked_forwards searches a larger chunk only when its first holds fewer items


def rows_per_chunk(
    model: nn.Module, x: torch.Tensor, max_batch: int | None, fwd: ForwardArgs = NO_ARGS
) -> int:
    """Items one forward may hold for inputs like ``x`` (sized to free memory; ``max_batch`` caps it).

    With ``max_batch``, or on CUDA, this is the shared sizing (:func:`~netsight.explain._common.chunk_size`:
    free memory, and ``max_batch`` taken as given as far as memory holds it). On the CPU without it, a
    chunk holds about 2 MiB of the model's activations (every
    leaf module's output) per torch thread, so that each thread's share of a layer's output is still
    in its core's cache when the next layer reads it, and at least 8 items (at most 256 MiB).

    Measured on a 2-core EPYC: one thread, a 24-64-64-2 MLP ran 160,000 rows 2.5x faster in chunks of
    2,048 (2 MiB) than of 8,192; two threads, 640,000 rows took 73 ms in chunks of 4 MiB, 85-96 ms in
    chunks of 2 MiB and 3x as long from 6 MiB up (the allocator returns and re-faults its pages); a
    two-conv CNN at 28 px was as fast at 8 to 128 images per forward and 2.3x slower at 512; ResNet-18
    at 224 px took 1.5x as long for 98 images per forward as for 8 at a time.

    ``fwd``: the forward's keyword arguments (for the probe forward).
    """
    if x.device.type != "cpu" or max_batch is not None:
        return chunk_size(model, x[:1], max_batch=max_batch, backward=False, fwd=fwd)
    item = max(probe(model, x[:1], fwd).leaf_bytes + x[:1].numel() * x.element_size(), 1)
    big = min(_CPU_MIN_ITEMS, _CPU_CHUNK_BYTES // item)
    cache = min(_CPU_CACHE_BYTES * max(1, torch.get_num_threads()), _CPU_CHUNK_BYTES)
    return max(1, min(_CPU_MAX_ITEMS, max(cache // item, big)))


def rows_limit(
    model: nn.Module, x: torch.Tensor, max_batch: int | None, fwd: ForwardArgs = NO_ARGS
) -> int | None:
    """How far :func:`masked_forwards` may grow a CPU chunk while it gets faster per item (the memory
    budget of :func:`~netsight.explain._common.chunk_size`, at most 8,192 items); ``None`` (no search)
    on accelerators, which are sized to their memory already, and when ``max_batch`` fixes the chunk.

    No static rule fits every model: a two-layer MLP runs 2.5x faster in cache-sized chunks than in
    4x larger ones, ResNet-18 at 224 px 1.5x faster at 8 images per forward than at 98, but a small
    transformer on 13 tokens 4x slower at 8 sequences per forward (the cache rule's choice: its leaf
    modules output 2 MiB per sequence) than at 2,048, where its matrix products are large enough to run
    at full speed (measured on a 2-core EPYC). So the search measures.

    ``None`` too for a model with a module in training mode: BatchNorm then normalises each chunk by its
    own statistics, so the scores depend on the chunk, which must not depend on timings.
    """
    if x.device.type != "cpu" or max_batch is not None or any(m.training for m in model.modules()):
        return None
    return chunk_size(model, x[:1], max_batch=_CPU_MAX_ITEMS, backward=False, fwd=fwd)


class _ChunkSearch:
    """Picks the chunk of a CPU forward loop by timing it: starting from the cache-sized chunk, try twice
    as many items per forward while that is at least 10 % faster per item (three forwards timed at each
    size, the fastest counting, since a busy machine only ever adds time; a size 30 % slower at its
    first forward is dropped at once), then keep the best. A larger size is tried only while at least
    8 chunks of it remain, so the search's own slower forwards are a small part of the work, and a
    short loop runs as before. A model in eval mode scores each item on its own, so the chunk changes
    no score beyond float rounding (the tests compare it with a fixed chunk)."""

    GAIN = 0.9  # a larger chunk must take at most this fraction of the best time per item
    DROP = 1.3  # ... and is dropped after one forward that is this much slower
    TIMED = 3  # forwards timed at each size
    REMAINING = 8

    def __init__(self, start: int, limit: int) -> None:
        self.size = start
        self.limit = limit
        self.best = (start, float("inf"))  # (size, seconds per item)
        self.times: list[float] = []
        self.active = limit > start

    def record(self, items: int, seconds: float, remaining: int) -> None:
        """Time of a forward of ``items`` (the current size's full chunks only); ``remaining``: items
        still to run after it."""
        if not self.active or items != self.size:
            return
        self.times.append(seconds / items)
        per = min(self.times)
        best_size, best_per = self.best
        slower = per > self.DROP * best_per
        if len(self.times) < self.TIMED and not slower:
            return
        if per < self.GAIN * best_per:
            self.best = (self.size, per)
            bigger = min(2 * self.size, self.limit)
            if bigger > self.size and remaining >= self.REMAINING * bigger:
                self.size, self.times = bigger, []
                return
        else:
            self.size = best_size
        self.active = False


def masked_forwards(
    model: nn.Module,
    build: Build,
    n: int,
    target: Target,
    *,
    chunk: int,
    device: torch.device,
    probability: bool = False,
    progress: bool | None = None,
    desc: str = "perturb",
    items_per_id: int = 1,
    grow_to: int | None = None,
    fwd: ForwardArgs = NO_ARGS,
) -> torch.Tensor:
    """Scores ``[n * items_per_id]`` of perturbed items, ``chunk`` ids per forward, built on the fly.

    ``build(lo, hi)`` turns the ids ``lo .. hi - 1`` into the perturbed inputs ``[m * items_per_id, *S]``
    (each id may stand for several items, e.g. a coalition for every sample of the batch) and the
    sample each item belongs to (to pick its class from ``target``, classes ``[B]`` or a callable). A
    build that returns the very same owner tensor for every full chunk has its classes gathered once.
    ``grow_to``: ids per forward the chunk may grow to while that is faster per item (``_ChunkSearch``,
    from :func:`rows_limit`; the forwards are timed, so only on the CPU); ``build`` must then take
    ranges of any length up to it. ``fwd``: the forward's keyword arguments; each item gets the rows
    of the sample it belongs to (gathered once per owner tensor too).
    """
    if chunk < 1:
        raise ArgumentError(f"chunk: expected a positive number of items per forward, got {chunk}.")
    if isinstance(target, torch.Tensor):
        target = target.to(device)
    # Scores go straight into one preallocated [n]: keeping a small tensor per chunk alive until a
    # final cat fragments the host heap, so that the allocator hands every chunk's activations back to
    # the OS and faults them in again (measured: a 24-64-64-2 MLP ran its forwards 1.6x slower so).
    out = torch.empty(n * items_per_id, dtype=torch.float32, device=device)
    bar = progress_bar(n * items_per_id, desc, progress)
    # the owner tensor of the last chunk (and its version: a build may refill one buffer in place),
    # and its classes [m, 1]
    last: tuple[torch.Tensor | None, int] = (None, -1)
    idx = torch.zeros((0, 1), dtype=torch.long, device=device)
    # the same for the forward's per-sample keyword arguments: the owner they were gathered for
    last_kw: tuple[torch.Tensor | None, int] = (None, -1)
    kw: Mapping[str, Any] = fwd.fixed
    # many small items per chunk (tabular rows): the cache-sized chunk is right, and trying a larger
    # one costs more than it can win (measured: up to 9 % at 500 coalitions); few large items
    # (images, token sequences): the search
    small = chunk * items_per_id >= _SEARCH_BELOW_ITEMS
    search = _ChunkSearch(chunk, grow_to) if grow_to is not None and not small else None
    try:
        with torch.no_grad():
            lo = 0
            while lo < n:
                size = search.size if search is not None else chunk
                hi = min(lo + size, n)
                began = time.perf_counter()
                xs, owner = build(lo, hi)
                m = (hi - lo) * items_per_id
                dest = out[lo * items_per_id : hi * items_per_id]
                if fwd.per_sample and (owner is not last_kw[0] or owner._version != last_kw[1]):
                    last_kw, kw = (owner, owner._version), fwd.rows(owner)
                if isinstance(target, torch.Tensor) and not probability:
                    if owner is not last[0] or owner._version != last[1]:
                        last, idx = (owner, owner._version), target.index_select(0, owner)[:, None]
                    scores = logits(model(xs, **kw)).float()
                    if scores.shape[0] != m:
                        raise TargetError(
                            f"target: {m} classes for {scores.shape[0]} outputs; pass one class per sample."
                        )
                    torch.gather(scores, 1, idx, out=dest[:, None])
                else:
                    t = target[owner] if isinstance(target, torch.Tensor) else target
                    got = _scores(model(xs, **kw), t, probability)
                    if got.shape != (m,):
                        raise TargetError(
                            f"target: the callable returned {tuple(got.shape)} scores for {m} inputs; it "
                            "must return one score per sample, a tensor [B]."
                        )
                    dest.copy_(got)
                if search is not None:
                    search.record(hi - lo, time.perf_counter() - began, n - hi)
                if bar is not None:
                    bar.update(m)
                lo = hi
    finally:
        if bar is not None:
            bar.close()
    return out


def _blender(x: torch.Tensor, fill: torch.Tensor) -> tuple[torch.dtype, Blend]:
    """``(keep_dtype, blend)``: ``blend(keep, on, off)`` is ``on`` where ``keep`` is 1, else ``off``
    (broadcasting), bit-exact, with ``keep`` of ``keep_dtype``.

    For floating inputs whose differences ``x - fill`` are finite, ``torch.lerp(off, on, keep)`` gives
    exactly ``off`` at weight 0 and ``on`` at weight 1 (it computes ``off + w (on - off)`` below 1/2 and
    ``on - (on - off)(1 - w)`` above), about twice as fast as a broadcast ``torch.where`` on a bool mask;
    otherwise (token ids, infinities) ``torch.where``. One check per call, not per chunk.
    """
    if x.is_floating_point() and bool(torch.isfinite(x[:, None] - fill).all()):

        def lerp(
            keep: torch.Tensor, on: torch.Tensor, off: torch.Tensor, out: torch.Tensor | None = None
        ) -> torch.Tensor:
            return torch.lerp(off, on, keep, out=out)

        return x.dtype, lerp

    def where(
        keep: torch.Tensor, on: torch.Tensor, off: torch.Tensor, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        return torch.where(keep, on, off, out=out)

    return torch.bool, where


def coalition_scores(
    model: nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    fill: torch.Tensor,
    z: torch.Tensor,
    *,
    target: Target,
    chunk: int,
    grow_to: int | None = None,
    progress: bool | None = None,
    desc: str = "coalitions",
    fwd: ForwardArgs = NO_ARGS,
) -> torch.Tensor:
    """The model's score on every coalition ``z`` ``[n, M]`` (bool) for every sample: ``[n, B]``.

    Sample ``b``'s element ``e`` keeps its value where ``z[:, labels[b, e]]`` is on (and where
    ``labels == -1``) and takes ``fill[b, k, e]`` where it is off; with ``K`` fill rows (a background),
    the score is the mean over them. ``x``: ``[B, *S]``; ``labels``: ``[B, *S']`` broadcastable to it;
    ``fill``: ``[B, K, *S]``;
    ``target``: classes ``[B]`` or a callable. ``chunk`` (and ``grow_to``, see :func:`masked_forwards`):
    items per forward. ``fwd``: the forward's keyword arguments, for the ``B`` samples of ``x``.
    """
    n, m = z.shape
    b, k = fill.shape[0], fill.shape[1]
    keep_dtype, blend = _blender(x, fill)
    zx = torch.cat([z.to(x.device, torch.bool), torch.ones(n, 1, dtype=torch.bool, device=x.device)], dim=1)
    zx = zx.to(keep_dtype)  # [n, M + 1]: 1 = kept, as the blend wants it
    lab = torch.where(labels < 0, m, labels)  # [B, *S'], fixed elements read the always-on column
    flat_lab = lab.flatten(1)  # [B, P]
    per_row = b * k  # items per coalition

    if per_row <= chunk:  # whole coalitions per chunk: broadcast, no per-item gathers
        rows_per = chunk // per_row
        cols = flat_lab.reshape(-1)  # [B*P]
        one = torch.arange(b, device=x.device).repeat_interleave(k)  # [B*K]: the owner of one coalition
        owners: dict[int, torch.Tensor] = {}  # r -> [r*B*K], the same tensor for every chunk of r rows
        bufs: list[torch.Tensor] = []  # the perturbed inputs, reused (grown when the chunk grows)

        def build(lo: int, hi: int) -> tuple[torch.Tensor, torch.Tensor]:
            r = hi - lo
            if not bufs or bufs[0].shape[0] < r:
                bufs[:] = [torch.empty((r, b, k, *x.shape[1:]), dtype=x.dtype, device=x.device)]
            keep = zx[lo:hi].index_select(1, cols).view(r, b, 1, *lab.shape[1:])  # [r, B, 1, *S']
            pert = blend(keep, x[None, :, None], fill[None], bufs[0][:r])  # [r, B, K, *S]
            owner = owners.get(r)
            if owner is None:
                owner = owners[r] = one.repeat(r)
            return pert.flatten(0, 2), owner

        make: Build = build
        count, size, per_id = n, rows_per, per_row
        grow = None if grow_to is None else max(rows_per, grow_to // per_row)
    else:

        def build_items(lo: int, hi: int) -> tuple[torch.Tensor, torch.Tensor]:  # a coalition spans chunks
            ids = torch.arange(lo, hi, device=x.device)
            row, sample, bg = ids // per_row, (ids // k) % b, ids % k
            keep = zx[row[:, None], flat_lab[sample]].view(ids.shape[0], *lab.shape[1:])  # [m, *S']
            return blend(keep, x[sample], fill[sample, bg], None), sample

        make, count, size, per_id, grow = build_items, n * per_row, chunk, 1, grow_to

    flat = masked_forwards(
        model,
        make,
        count,
        target,
        chunk=size,
        device=x.device,
        progress=progress,
        desc=desc,
        items_per_id=per_id,
        grow_to=grow,
        fwd=fwd,
    )
    return flat.view(n, b, k).mean(dim=2)


@dataclass(frozen=True)
class GroupScores:
    """One group of samples with the same feature count ``m``: their indices in the batch, the
    coalitions scored ``z [n, m]``, and the scores ``y [n, len(idx)]``."""

    m: int
    idx: torch.Tensor
    z: torch.Tensor
    y: torch.Tensor


def score_feature_groups(
    model: nn.Module,
    x: torch.Tensor,
    target: TargetSpec,
    feats: Features,
    fill: torch.Tensor,
    *,
    coalitions: Callable[[int], torch.Tensor],
    max_batch: int | None,
    progress: bool | None,
    desc: str,
    fwd: ForwardArgs = NO_ARGS,
) -> tuple[list[GroupScores], Target, int]:
    """What the surrogate methods (KernelSHAP, LIME) share: resolve ``target`` on the unperturbed
    inputs, then score ``coalitions(m)`` (``[n, m]`` bool) for every group of samples with ``m``
    features, in memory-sized chunks. Returns the groups, the resolved target and the model calls.
    ``fwd``: the forward's keyword arguments."""
    out = []
    with session(model, freeze=False) as s:  # forwards without gradients: nothing to freeze
        sizing = sizing_args(fwd)
        chunk = rows_per_chunk(model, x, max_batch, **sizing)
        limit = rows_limit(model, x, max_batch, **sizing)
        _ref, t = reference_scores(model, x, target, chunk=chunk, fwd=fwd)
        for m, members in feats.groups():
            idx = torch.tensor(members, device=x.device)
            z = coalitions(m)
            y = coalition_scores(
                model,
                x[idx],
                feats.labels[idx],
                fill[idx],
                z,
                target=t[idx] if isinstance(t, torch.Tensor) else t,
                chunk=chunk,
                grow_to=limit,
                progress=progress,
                desc=desc,
                fwd=fwd.select(idx),
            )
            out.append(GroupScores(m, idx, z, y))
    return out, t, s.calls


def sizing_args(fwd: ForwardArgs) -> dict[str, ForwardArgs]:
    """``fwd=`` for :func:`rows_per_chunk` and :func:`rows_limit` when there are keyword arguments, and
    nothing otherwise (their three-argument form, which the tests replace to fix the chunk)."""
    return {"fwd": fwd} if fwd else {}


def spread_features(feats: Features, per_feature: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-feature values ``[B, M_max]`` painted onto the inputs' shape (in ``x``'s float dtype)."""
    attr = feats.spread(per_feature, x.shape[1:])
    return attr.to(x.dtype) if x.is_floating_point() else attr
