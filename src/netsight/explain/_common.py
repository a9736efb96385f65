"""Shared machinery of the explain methods: targets, scores, chunking, layers, sessions.

Methods use these and never their own copies (ARCHITECTURE.md): one place resolves a ``target``, one
sizes chunks to the memory it finds, one runs batched passes, one finds the default layer and turns a
ViT's tokens into a map.
"""

from __future__ import annotations

import math
import numbers
import os
import weakref
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from netsight._progress import progress_bar
from netsight.capture import Hooks, resolve, unwrap
from netsight.errors import ArgumentError, ExplainError, TargetError

from ._forward import NO_ARGS, NO_KW, ForwardArgs

__all__ = [
    "LayerPass",
    "Session",
    "Target",
    "batched",
    "check_inputs",
    "chunk_size",
    "default_layer",
    "forward_scores",
    "free_bytes",
    "input_gradients",
    "layer_pass",
    "logits",
    "no_layer",
    "prepare_target",
    "probe",
    "resolve_chunk",
    "resolve_target",
    "resolved",
    "score",
    "session",
    "take_target",
    "to_grid",
    "upsample",
    "with_target",
]

TargetSpec = int | Sequence[int] | torch.Tensor | Callable[[Any], torch.Tensor] | None
#: A resolved target: per-sample classes ``[B]`` (long, on the output's device) or a callable.
Target = torch.Tensor | Callable[[Any], torch.Tensor]


# -- inputs, outputs and targets -------------------------------------------------------------------
def check_inputs(inputs: Any, *, floating: bool = True) -> torch.Tensor:
    """``inputs`` as a batched tensor ``[B, ...]``; a clear error otherwise."""
    if not isinstance(inputs, torch.Tensor):
        raise ArgumentError(
            f"inputs: expected a torch.Tensor batch [B, ...], got {type(inputs).__name__}. "
            "Stack your samples with torch.stack(...)."
        )
    if inputs.dim() < 2:
        raise ArgumentError(
            f"inputs: expected a batch [B, ...] with at least 2 dimensions, got shape {tuple(inputs.shape)}. "
            "Add a batch dimension with x.unsqueeze(0)."
        )
    integer = not (inputs.is_floating_point() or inputs.is_complex()) and inputs.dtype != torch.uint8
    if floating and integer:
        raise ArgumentError(
            f"inputs: this method differentiates the score with respect to the input, or blends the input "
            f"with masks; integer inputs (dtype {inputs.dtype}: token ids, indices) cannot be. For a text "
            "model use layer_integrated_gradients (through the embeddings), kernel_shap or lime (a feature "
            "per token), occlusion, or the attention methods (grad_attention, attention_rollout). For an "
            "image stored as integers, pass x.float()."
        )
    if floating and not inputs.is_floating_point():
        raise ArgumentError(
            f"inputs: this method differentiates the score with respect to the input, or blends the input "
            f"with masks, which needs a floating tensor; got dtype {inputs.dtype}. Pass x.float(), or use "
            "occlusion, which takes integer inputs too."
        )
    return inputs


def logits(output: Any) -> torch.Tensor:
    """The class scores ``[B, C]`` in a model's output: a tensor, ``.logits``, or a tuple's first item."""
    if isinstance(output, torch.Tensor):
        out = output
    elif hasattr(output, "logits") and isinstance(output.logits, torch.Tensor):
        out = output.logits
    elif isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        out = output[0]
    elif isinstance(output, Mapping) and isinstance(output.get("logits"), torch.Tensor):
        out = output["logits"]
    else:
        raise ExplainError(
            f"the model returned {type(output).__name__}, with no class scores to explain. Return a "
            "tensor [B, C] (or an object with .logits), or pass a callable target that picks the score."
        )
    if out.dim() == 1:
        out = out[:, None]
    if out.dim() != 2:
        raise ExplainError(
            f"the model's output has shape {tuple(out.shape)}; a class target needs scores [B, C]. "
            "Pass a callable target (output -> tensor [B]) that picks what to explain."
        )
    return out


def _plain_target(target: Any) -> Any:
    """numpy classes as Python and torch ones: an integer scalar (``np.int64``, what ``labels[i]`` and
    ``argmax`` give) as an int, an array as a tensor; anything else as it is."""
    if isinstance(target, numbers.Integral) and not isinstance(target, bool):
        return int(target)
    if not isinstance(target, (torch.Tensor, Sequence, numbers.Number)) and hasattr(target, "__array__"):
        return torch.as_tensor(target)
    return target


def _is_classes(values: Sequence[Any]) -> bool:
    return all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in values)


def _not_classes(target: torch.Tensor) -> bool:
    """A tensor whose values are not class indices: floating, complex or bool."""
    return target.is_floating_point() or target.is_complex() or target.dtype == torch.bool


def resolve_target(output: Any, target: TargetSpec) -> Target:
    """Turn a ``target`` into per-sample classes ``[B]`` (or keep a callable), checking the range.

    ``int``: the same class for every sample; a sequence or tensor: one class per sample; ``None``: the
    predicted class (argmax); a callable: ``target(output) -> tensor [B]`` picks the score itself.
    """
    if callable(target) and not isinstance(target, torch.Tensor):
        return target
    scores = logits(output)
    b, c = scores.shape
    target = _plain_target(target)
    if target is None:
        return scores.detach().argmax(dim=1)
    if isinstance(target, bool):
        raise TargetError(f"target: got the bool {target}; pass a class index in 0..{c - 1}.")
    if isinstance(target, int):
        t = torch.full((b,), target, dtype=torch.long, device=scores.device)
        shown: Any = target
    elif isinstance(target, torch.Tensor):
        if _not_classes(target):
            raise TargetError(
                f"target: expected integer class indices, got a {target.dtype} tensor. Pass "
                "target.long() (or the argmax of scores)."
            )
        t = target.reshape(-1).to(device=scores.device, dtype=torch.long)
        if target.dim() == 0:
            t = t.expand(b)
        shown = target.tolist()
    elif isinstance(target, Sequence) and not isinstance(target, str):
        if not _is_classes(target):
            raise TargetError(f"target: expected a sequence of class indices (ints), got {list(target)!r}.")
        t = torch.tensor([int(v) for v in target], dtype=torch.long, device=scores.device)
        shown = list(target)
    else:
        raise TargetError(
            f"target: cannot use {type(target).__name__} {target!r}. Pass an int class, one class per "
            "sample (list or tensor), a callable output -> tensor [B], or None for the predicted class."
        )
    if t.numel() != b:
        raise TargetError(
            f"target: got {t.numel()} classes {shown!r} for a batch of {b} samples. Pass one class per "
            "sample, or a single int for all of them."
        )
    bad = (t < 0) | (t >= c)
    if bool(bad.any()):
        value = t[bad][0].item()
        raise TargetError(
            f"target: class {value} is out of range for an output with {c} classes; valid classes are "
            f"0..{c - 1}."
        )
    return t


_PREDICTED = -1  # internal marker in a prepared target: "the predicted class of this sample"


def prepare_target(target: TargetSpec, batch: int, device: torch.device) -> Target:
    """Check ``target`` against the batch size before any pass, and make it sliceable per chunk.

    Returns a callable unchanged, or a long tensor ``[B]`` on the host in which ``-1`` stands for "the
    predicted class" (from ``None``); :func:`resolve_chunk` turns a slice of it into classes once the
    output of that chunk is known (and checks the class range then).
    """
    if callable(target) and not isinstance(target, torch.Tensor):
        return target
    # classes live on the host, so that checking and resolving them per chunk never waits for the device
    # (see resolve_chunk): a target tensor on a GPU is read once, here, before any pass is queued,
    # instead of once per check (each a wait for the device, one of them between forward and backward)
    host = torch.device("cpu")
    target = _plain_target(target)
    if target is None:
        return torch.full((batch,), _PREDICTED, dtype=torch.long, device=host)
    if isinstance(target, bool):
        raise TargetError(f"target: got the bool {target}; pass a class index (an int >= 0).")
    if isinstance(target, int):
        if target < 0:
            raise TargetError(f"target: class {target} is negative; valid classes start at 0.")
        return torch.full((batch,), target, dtype=torch.long, device=host)
    if isinstance(target, torch.Tensor):
        if _not_classes(target):
            raise TargetError(
                f"target: expected integer class indices, got a {target.dtype} tensor. Pass target.long()."
            )
        t = target.detach().reshape(-1).to(device=host, dtype=torch.long)
        if target.dim() == 0:
            t = t.expand(batch).clone()
        shown: Any = t  # listed only in the error below
    elif isinstance(target, Sequence) and not isinstance(target, str):
        if not _is_classes(target):
            raise TargetError(f"target: expected a sequence of class indices (ints), got {list(target)!r}.")
        t = torch.tensor([int(v) for v in target], dtype=torch.long, device=host)
        shown = list(target)
    else:
        raise TargetError(
            f"target: cannot use {type(target).__name__} {target!r}. Pass an int class, one class per "
            "sample (list or tensor), a callable output -> tensor [B], or None for the predicted class."
        )
    if t.numel() != batch:
        raise TargetError(
            f"target: got {t.numel()} classes {_listed(shown)!r} for a batch of {batch} samples. Pass one "
            "class per sample, or a single int for all of them."
        )
    if bool((t < 0).any()):
        raise TargetError(f"target: class {int(t[t < 0][0])} is negative; valid classes start at 0.")
    return t


def _listed(classes: Any) -> Any:
    return classes.tolist() if isinstance(classes, torch.Tensor) else classes


def resolve_chunk(output: Any, target: Target) -> Target:
    """Resolve a chunk of a prepared target against that chunk's output (predicted classes, range)."""
    if not isinstance(target, torch.Tensor):
        return target
    scores = logits(output)
    if target.device.type == "cpu" and scores.device.type != "cpu":
        return _resolve_on_host(scores, target)
    t = target.to(scores.device)
    pred = t == _PREDICTED
    if bool(pred.any()):
        t = torch.where(pred, scores.detach().argmax(dim=1), t)
    return resolve_target(scores, t)


def _resolve_on_host(scores: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """:func:`resolve_chunk` for classes held on the host and scores on a device: the checks read
    only host memory, so the device keeps its queue (no synchronisation before the backward pass)."""
    b, c = scores.shape
    if t.numel() != b:
        raise TargetError(
            f"target: got {t.numel()} classes for a batch of {b} samples. Pass one class per sample, or a "
            "single int for all of them."
        )
    pred = t == _PREDICTED
    given = t[~pred]
    bad = given >= c
    if bool(bad.any()):
        raise TargetError(
            f"target: class {int(given[bad][0])} is out of range for an output with {c} classes; valid "
            f"classes are 0..{c - 1}."
        )
    if bool(pred.all()):
        return scores.detach().argmax(dim=1)
    classes = t.to(scores.device, non_blocking=True)
    if bool(pred.any()):
        classes = torch.where(pred.to(scores.device), scores.detach().argmax(dim=1), classes)
    return classes


def resolved(target: Target, classes: torch.Tensor | None) -> torch.Tensor | None:
    """What an Explanation reports as its target: the classes, or None for a callable."""
    return classes if isinstance(target, torch.Tensor) else None


def take_target(target: Target, index: slice | torch.Tensor) -> Target:
    """The part of a resolved target that belongs to a chunk of samples."""
    return target[index] if isinstance(target, torch.Tensor) else target


def score(output: Any, target: Target) -> torch.Tensor:
    """The score explained per sample ``[B]``: the target class's logit, or the callable's result."""
    if isinstance(target, torch.Tensor):
        scores = logits(output)
        t = target.to(scores.device)
        if t.numel() != scores.shape[0]:
            raise TargetError(
                f"target: {t.numel()} classes for {scores.shape[0]} outputs; pass one class per sample."
            )
        return scores.gather(1, t[:, None])[:, 0]
    s = target(output)
    if not isinstance(s, torch.Tensor) or s.dim() != 1:
        got = tuple(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__
        raise TargetError(
            f"target: the callable must return one score per sample, a tensor [B]; it returned {got}. "
            "For example: target=lambda out: out[:, 3] - out[:, 5]."
        )
    return s


def no_layer(method: str, layer: Any) -> None:
    """Input-space methods take no layer; say so instead of ignoring it."""
    if layer is not None:
        raise ArgumentError(
            f"layer: {method} attributes to the input, so layer={layer!r} has no meaning here. Pass "
            "layer=None, or use a layer method (netsight.list_methods(kind='layer'))."
        )


# -- sessions ----------------------------------------------------------------------------------------
@dataclass
class Session:
    """The hooks of one explanation, plus how many times the model was called."""

    hooks: Hooks
    calls: int = 0
    samples: int = 0

    def _count(self, module: nn.Module, args: Any) -> None:
        self.calls += 1
        first = args[0] if args else None
        if isinstance(first, torch.Tensor) and first.dim() > 0:
            self.samples += first.shape[0]


@contextmanager
def session(model: nn.Module, *, freeze: bool = True) -> Iterator[Session]:
    """Open a :class:`Hooks` session on ``model`` that counts its calls.

    ``freeze``: switch off ``requires_grad`` of every parameter while the session runs (restored on
    exit): methods differentiate with respect to inputs or activations only, so the forward builds no
    graph for the weights and no ``.grad`` is ever written into the user's model.
    """
    # without freezing, nothing here changes a flag: no snapshot to take and restore (ns.explain keeps
    # one around every method anyway)
    with Hooks(model, restore_state=freeze) as hooks:
        s = Session(hooks)
        if freeze:
            for p in model.parameters():
                if p.requires_grad:
                    hooks.set_requires_grad(p, False)
        hooks.forward_pre(model, s._count)
        yield s


# -- chunking ----------------------------------------------------------------------------------------
def free_bytes(device: torch.device) -> int:
    """Memory free for new tensors on ``device``: CUDA's free memory, or the host's available RAM."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 2 << 30


@dataclass(frozen=True)
class Probe:
    """What one forward of a single sample showed: every module's output shape, in finishing order."""

    order: tuple[tuple[str, tuple[int, ...]], ...]
    leaf_bytes: int  # bytes of every leaf module's output for one sample
    leaves: frozenset[str] = field(default_factory=frozenset)


_PROBES: weakref.WeakKeyDictionary[nn.Module, dict[tuple[Any, ...], Probe]] = weakref.WeakKeyDictionary()


def probe(model: nn.Module, example: torch.Tensor, fwd: ForwardArgs = NO_ARGS) -> Probe:
    """Run one sample through ``model`` (eval mode, no grad) and record each module's output shape.

    ``fwd``: the forward's keyword arguments (the first sample's rows of the per-sample ones). Cached
    per model, input shape and keyword arguments' shapes, so repeated explanations pay for it once.
    """
    root = unwrap(model)
    key = (tuple(example.shape[1:]), example.dtype, example.device.type, *fwd.key())
    cache = _PROBES.setdefault(root, {})
    if key in cache:
        return cache[key]
    named = [(n, m) for n, m in root.named_modules() if n]
    leaves = frozenset(n for n, m in named if not any(True for _ in m.children()))
    order: list[tuple[str, tuple[int, ...]]] = []
    total = [0]

    def on(name: str, module: nn.Module, args: Any, out: Any) -> None:
        t = out if isinstance(out, torch.Tensor) else _first_tensor(out)
        if t is None:
            return
        order.append((name, tuple(t.shape)))
        if name in leaves:
            total[0] += t.numel() * t.element_size()

    with Hooks(root) as hooks, torch.no_grad():
        hooks.set_training(root, False)
        for name, module in named:
            hooks.forward(module, _bind(on, name))
        root(example[:1], **fwd.rows(slice(0, 1)))
    result = Probe(tuple(order), int(total[0]), leaves)
    cache[key] = result
    return result


def _bind(fn: Callable[..., None], name: str) -> Callable[..., None]:
    def hook(module: nn.Module, args: Any, out: Any) -> None:
        fn(name, module, args, out)

    return hook


def _first_tensor(out: Any) -> torch.Tensor | None:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    if hasattr(out, "last_hidden_state") and isinstance(out.last_hidden_state, torch.Tensor):
        return out.last_hidden_state
    return None


_CPU_MAX_CHUNK = 256  # beyond this, bigger CPU batches buy no speed and only risk memory


def check_max_batch(max_batch: Any) -> None:
    """``max_batch`` is None (automatic) or a positive int; say so otherwise."""
    if max_batch is not None and (
        not isinstance(max_batch, int) or isinstance(max_batch, bool) or max_batch < 1
    ):
        raise ArgumentError(
            f"max_batch: expected a positive int (samples per pass) or None (sized to free memory), got "
            f"{max_batch!r}."
        )


def chunk_size(
    model: nn.Module,
    example_input: torch.Tensor,
    *,
    per_item_bytes: int | None = None,
    max_batch: int | None = None,
    backward: bool = True,
    fraction: float | None = None,
    fwd: ForwardArgs = NO_ARGS,
) -> int:
    """How many samples one pass may hold, sized to the memory free on the input's device.

    ``per_item_bytes`` defaults to the bytes every leaf module outputs for one sample (one probe
    forward, cached), doubled when the pass also runs backward (saved activations plus their
    gradients), plus the input itself. The budget is a fraction of the free memory (60 % of CUDA's free
    memory, 30 % of the host's available RAM). On the CPU, without ``max_batch``, at most 256 (bigger
    CPU batches buy no speed). ``max_batch`` overrides that: the user's number, as far as the memory
    budget holds it, never needed to avoid running out of memory. ``fwd``: the forward's keyword
    arguments (for the probe).
    """
    check_max_batch(max_batch)
    dev = example_input.device
    if per_item_bytes is None:
        p = probe(model, example_input, fwd)
        item = example_input[:1].numel() * example_input.element_size()
        per_item_bytes = p.leaf_bytes * (2 if backward else 1) + 2 * item
    per_item_bytes = max(int(per_item_bytes), 1)
    frac = fraction if fraction is not None else (0.6 if dev.type == "cuda" else 0.3)
    n = max(1, int(free_bytes(dev) * frac) // per_item_bytes)
    if max_batch is not None:
        return min(n, max_batch)
    return n if dev.type == "cuda" else min(n, _CPU_MAX_CHUNK)


def batched(
    fn: Callable[..., Any],
    inputs: torch.Tensor | Sequence[torch.Tensor],
    *,
    chunk: int,
    progress: bool | None = False,
    desc: str = "explain",
) -> Any:
    """Run ``fn`` on ``chunk``-sized slices of ``inputs`` (one tensor, or several sharing dim 0) and
    concatenate the results along dim 0; ``fn`` may return a tensor or a tuple of tensors.

    ``progress``: a tqdm bar (:func:`netsight._progress.progress_bar`; ``None``: once the work has
    run for two seconds, on a terminal).
    """
    many = not isinstance(inputs, torch.Tensor)
    parts: Sequence[torch.Tensor] = list(inputs) if many else [inputs]  # type: ignore[list-item]
    n = parts[0].shape[0]
    if chunk < 1:
        raise ArgumentError(f"chunk: expected a positive number of samples per pass, got {chunk}.")
    starts = range(0, n, chunk)
    bar = progress_bar(n, desc, progress)
    results: list[Any] = []
    try:
        for s in starts:
            args = [p[s : s + chunk] for p in parts]
            results.append(fn(*args))
            if bar is not None:
                bar.update(args[0].shape[0])
    finally:
        if bar is not None:
            bar.close()
    if not results:
        raise ArgumentError("inputs: the batch is empty; pass at least one sample.")
    if isinstance(results[0], tuple):
        return tuple(torch.cat([r[i] for r in results]) for i in range(len(results[0])))
    return results[0] if len(results) == 1 else torch.cat(results)


# -- gradients with respect to the input -----------------------------------------------------------
def input_gradients(
    model: nn.Module, x: torch.Tensor, target: Target, kw: Mapping[str, Any] = NO_KW
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(d score / d x, score, classes)`` for one chunk: ``[N, ...]``, ``[N]``, ``[N]`` long.

    ``target``: a slice of a prepared target (:func:`prepare_target`), one class (or ``-1`` for the
    predicted one) per sample of ``x``, or a callable; classes are ``-1`` for a callable. ``kw``: the
    forward's keyword arguments for these rows (:meth:`ForwardArgs.rows`). No ``.grad`` is written
    into the model (``torch.autograd.grad`` with respect to the input only).
    """
    xi = x.detach().requires_grad_(True)
    with torch.enable_grad():
        out = model(xi, **kw)
        t = resolve_chunk(out, target)
        s = score(out, t)
        (g,) = torch.autograd.grad(s.sum(), xi)
    classes = t if isinstance(t, torch.Tensor) else torch.full_like(s, _PREDICTED, dtype=torch.long)
    return g, s.detach(), classes


def input_gradient_pass(
    model: nn.Module,
    x: torch.Tensor,
    target: Target,
    *,
    max_batch: int | None,
    progress: bool | None,
    desc: str,
    prepare: Callable[[Hooks], Any] | None = None,
    fwd: ForwardArgs = NO_ARGS,
) -> tuple[torch.Tensor, torch.Tensor, int, Any]:
    """``d score / d x`` for every sample, in memory-sized chunks, inside one :func:`session`.

    ``prepare(hooks)`` runs first (e.g. to install backward rules on the ReLUs); ``fwd``: the forward's
    keyword arguments. Returns ``(gradients, classes, model calls, whatever prepare returned)``;
    shared by the gradient methods.
    """
    with session(model) as s:
        extra = prepare(s.hooks) if prepare is not None else None
        chunk = chunk_size(model, x, max_batch=max_batch, fwd=fwd)
        grads, _, classes = with_target(
            lambda xc, tc, kw: input_gradients(model, xc, tc, kw),
            x,
            target,
            chunk=chunk,
            progress=progress,
            desc=desc,
            fwd=fwd,
        )
    return grads, classes, s.calls, extra


def with_target(
    fn: Callable[..., Any],
    x: torch.Tensor,
    target: Target,
    *,
    chunk: int,
    progress: bool | None = False,
    desc: str = "explain",
    fwd: ForwardArgs = NO_ARGS,
) -> Any:
    """:func:`batched` over ``x`` with the matching slices of a prepared ``target`` and of the
    forward's keyword arguments ``fwd``: ``fn(x_chunk, target_chunk, kwargs_chunk)``; a callable
    target is passed whole to every chunk."""
    names = list(fwd.per_sample)  # sliced with x, so that every chunk's rows and arguments align
    per = [fwd.per_sample[k] for k in names]
    if isinstance(target, torch.Tensor):

        def sliced(xc: torch.Tensor, tc: torch.Tensor, *kc: torch.Tensor) -> Any:
            return fn(xc, tc, fwd.with_rows(names, kc))

        return batched(sliced, [x, target, *per], chunk=chunk, progress=progress, desc=desc)

    def whole(xc: torch.Tensor, *kc: torch.Tensor) -> Any:
        return fn(xc, target, fwd.with_rows(names, kc))

    return batched(whole, [x, *per], chunk=chunk, progress=progress, desc=desc)


def forward_scores(
    model: nn.Module, x: torch.Tensor, target: Target, kw: Mapping[str, Any] = NO_KW
) -> torch.Tensor:
    """Scores ``[N]`` of one chunk without a graph (``kw``: the forward's keyword arguments for it)."""
    with torch.no_grad():
        return score(model(x, **kw), target)


# -- layers ----------------------------------------------------------------------------------------
def _is_grid(shape: tuple[int, ...]) -> bool:
    return len(shape) == 4 and shape[2] * shape[3] > 1


def _token_grid(n_tokens: int, hw: tuple[int, int] | None, image_hw: tuple[int, int]) -> tuple[int, int, int]:
    """``(prefix, h, w)``: how many leading (class / register) tokens to drop, and the patch grid."""
    for prefix in range(min(n_tokens, 17)):
        n = n_tokens - prefix
        if hw is not None:
            if hw[0] * hw[1] == n:
                return prefix, hw[0], hw[1]
            continue
        h = max(1, round(math.sqrt(n * image_hw[0] / max(image_hw[1], 1))))
        if n % h == 0 and abs(n // h * image_hw[0] - h * image_hw[1]) <= max(image_hw) // 2 + h:
            return prefix, h, n // h
    raise ExplainError(
        f"layer: its output has {n_tokens} tokens, which do not form a patch grid after dropping up to "
        "16 class/register tokens. Pick a layer with a spatial [B, C, H, W] output."
    )


def to_grid(t: torch.Tensor, image_hw: tuple[int, int], hw: tuple[int, int] | None = None) -> torch.Tensor:
    """A layer output as a map ``[B, C, h, w]``: 4-D outputs as they are; ViT tokens ``[B, N, D]``
    with the class/register tokens dropped and the patch tokens laid out on their grid."""
    if t.dim() == 4:
        return t
    if t.dim() == 3:
        prefix, h, w = _token_grid(t.shape[1], hw, image_hw)
        return t[:, prefix:, :].transpose(1, 2).reshape(t.shape[0], t.shape[2], h, w)
    raise ExplainError(
        f"layer: its output has shape {tuple(t.shape)}; a layer method needs [B, C, H, W] maps or "
        "[B, N, D] tokens of a vision transformer. Pick another layer."
    )


def _spatial_outputs(order: Sequence[tuple[str, tuple[int, ...]]]) -> list[int]:
    """Positions in ``order`` of spatial ``[B, C, H, W]`` outputs, leaving out the per-head tensors
    ``[B, heads, N, d]`` of an attention block, whose ``N`` is the token count of an earlier ``[B, N, D]``
    output (timm's ``attn.q_norm`` / ``k_norm`` return them)."""
    tokens: set[int] = set()
    found = []
    for i, (_, s) in enumerate(order):
        if len(s) == 3:
            tokens.add(s[1])
        elif _is_grid(s) and s[2] not in tokens:
            found.append(i)
    return found


def default_layer(model: nn.Module, inputs: torch.Tensor, fwd: ForwardArgs = NO_ARGS) -> str:
    """The layer a layer method uses when none is given.

    The last module (in the order modules finish) with a spatial ``[B, C, H, W]`` output that runs once
    per forward (not a shared module, such as the ReLU a torchvision bottleneck calls three times), from
    one probe forward. For a vision transformer, whose last spatial output is the patch embedding and
    whose later modules output tokens ``[B, N, D]`` on that grid: the last block (the last numbered
    non-leaf module with token outputs, ``encoder.layers.encoder_layer_11`` in torchvision,
    ``blocks.11`` in timm), taken at its first normalisation (its input): after the last block only the
    class token reaches the head, so gradients at the block's output would be zero on the patch tokens.
    ``fwd``: the forward's keyword arguments (for the probe).
    """
    p = probe(model, inputs, fwd)
    calls = Counter(n for n, _ in p.order)  # a module that runs twice per forward cannot be the layer
    grids = _spatial_outputs(p.order)
    grid_idx = [i for i in grids if calls[p.order[i][0]] == 1]
    if not grid_idx:
        if grids:
            shared = list(dict.fromkeys(p.order[i][0] for i in grids))[-3:]
            raise ExplainError(
                f"layer: every module of {type(model).__name__} with a spatial [B, C, H, W] output runs "
                f"more than once per forward (shared modules, e.g. {', '.join(repr(n) for n in shared)}), "
                "so none is one layer's output; pass layer='<module path>' of a module that runs once."
            )
        raise ExplainError(
            f"layer: {type(model).__name__} has no module with a spatial [B, C, H, W] output for input "
            f"shape {tuple(inputs.shape)}; pass layer='<module path>' explicitly."
        )
    last = grid_idx[-1]
    gname, gshape = p.order[last]
    hw = (gshape[2], gshape[3])
    tokens = [
        (i, n)
        for i, (n, s) in enumerate(p.order)
        if i > last and len(s) == 3 and 0 <= s[1] - hw[0] * hw[1] <= 16
    ]
    if not tokens:
        return gname
    blocks = [(i, n) for i, n in tokens if n not in p.leaves and n.rsplit(".", 1)[-1][-1:].isdigit()]
    if not blocks:
        return tokens[-1][1]
    block = blocks[-1][1]
    inner = [n for _, n in tokens if n.startswith(block + ".")]
    for name in inner:  # first to finish inside the block: its first norm
        if name in p.leaves:
            return name
    return block


@dataclass
class LayerPass:
    """One forward with a layer's output made a differentiable leaf."""

    output: Any  # the model's output
    activation: torch.Tensor  # the layer output as produced: [N, C, h, w] or tokens [N, T, D]
    leaf: torch.Tensor  # the leaf standing in for it (requires grad)

    def grid(self, t: torch.Tensor, image_hw: tuple[int, int]) -> torch.Tensor:
        return to_grid(t, image_hw)


def layer_pass(
    hooks: Hooks,
    model: nn.Module,
    layer: str,
    x: torch.Tensor,
    *,
    grad: bool = True,
    kw: Mapping[str, Any] = NO_KW,
) -> LayerPass:
    """Run ``model(x, **kw)`` once with ``layer``'s output replaced by a leaf tensor that requires grad.

    The rest of the network sees a copy of that leaf (so in-place ops after the layer are harmless);
    ``torch.autograd.grad(score, lp.leaf)`` then gives d score / d activation without backpropagating
    below the layer, and without writing any ``.grad`` into the model. The forward runs without
    gradients up to the layer (no graph, no saved activations below it, whatever the parameters'
    ``requires_grad``), and with them from the layer on.
    """
    ((_, module),) = resolve(unwrap(model), layer, argument="layer")
    box: dict[str, torch.Tensor] = {}

    def hook(mod: nn.Module, args: Any, out: Any) -> Any:
        t = _first_tensor(out)
        if t is None:
            raise ExplainError(
                f"layer: {layer!r} returned {type(out).__name__} with no tensor; pick another layer."
            )
        if "leaf" in box:
            raise ExplainError(
                f"layer: {layer!r} ran twice in one forward (a shared module); pick a layer that runs once."
            )
        leaf = t.detach().requires_grad_(grad)
        box["leaf"] = leaf
        if grad:  # record the graph from here on only: nothing below the layer is differentiated
            torch.set_grad_enabled(True)
        new = leaf.clone() if grad else leaf
        if isinstance(out, torch.Tensor):
            return new
        if isinstance(out, tuple):
            return (new, *out[1:])
        if isinstance(out, list):
            return [new, *out[1:]]
        raise ExplainError(
            f"layer: {layer!r} returns {type(out).__name__}; a layer method needs a module returning a "
            "tensor (or a tuple starting with one). Pick one of its submodules."
        )

    handle = hooks.forward(module, hook)
    try:
        with torch.no_grad():  # the hook switches gradients on at the layer (the context restores the mode)
            out = model(x, **kw)
    finally:
        handle.remove()
    if "leaf" not in box:
        raise ExplainError(f"layer: {layer!r} did not run during the forward pass; pick a layer that runs.")
    return LayerPass(output=out, activation=box["leaf"], leaf=box["leaf"])


def layer_outputs(
    s: Session, model: nn.Module, layer: str, x: torch.Tensor, target: Target, *, chunk: int, fwd: ForwardArgs
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(layer output [B, ...], classes [B] (-1 for a callable target), scores [B])`` of one chunked
    pass without gradients: what the forward-only layer methods start from."""

    def first(xc: torch.Tensor, tc: Any, kw: Mapping[str, Any]) -> tuple[torch.Tensor, ...]:
        lp = layer_pass(s.hooks, model, layer, xc, grad=False, kw=kw)
        tt = resolve_chunk(lp.output, tc)
        classes = tt if isinstance(tt, torch.Tensor) else torch.full((xc.shape[0],), -1, device=xc.device)
        return lp.leaf, classes, score(lp.output, tt).detach()

    out: tuple[torch.Tensor, torch.Tensor, torch.Tensor] = with_target(first, x, target, chunk=chunk, fwd=fwd)
    return out


def output_replacer(box: dict[str, torch.Tensor]) -> Callable[[nn.Module, Any, Any], Any]:
    """A forward hook that returns ``box["new"]`` in place of its module's output (a tensor, or the first
    item of a tuple or list): the rows a method wants the rest of the network to see."""

    def hook(module: nn.Module, args: Any, out: Any) -> Any:
        new = box["new"]
        if isinstance(out, torch.Tensor):
            return new
        if isinstance(out, tuple):
            return (new, *out[1:])
        return [new, *out[1:]]

    return hook


def upsample(cam: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``[B, 1, h, w]`` maps to the input's ``size`` (align_corners=False)."""
    if tuple(cam.shape[-2:]) == tuple(size):
        return cam
    return F.interpolate(cam, size=size, mode="bilinear", align_corners=False)
