"""SmoothGrad, SmoothGrad-squared and VarGrad: any gradient method averaged over noisy copies.

Smilkov, Thorat, Kim, Viegas, Wattenberg (2017), "SmoothGrad: removing noise by adding noise",
arXiv:1706.03825, eq. 3: ``M_hat(x) = (1/n) sum_j M(x + N(0, s^2))`` with ``s`` a fraction (10-20 %) of the
input's range (section 3.2). SmoothGrad-squared averages ``M^2`` (Hooker et al. 2019, "A Benchmark for
Interpretability Methods in Deep Neural Networks", NeurIPS); VarGrad is the variance
``E[M^2] - E[M]^2`` (Adebayo, Gilmer, Goodfellow, Kim 2018, "Local Explanation Methods for Deep Neural
Networks Lack Sensitivity to Parameter Values", ICLR workshop).

The base ``method`` is any registered gradient method; its passes over the ``B * samples`` noisy inputs
are batched and chunked by that method. The class explained is the one of the clean input.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from netsight.errors import ArgumentError

from ._common import (
    TargetSpec,
    check_inputs,
    chunk_size,
    no_layer,
    prepare_target,
    resolve_chunk,
    session,
    with_target,
)
from ._explanation import Explanation
from ._forward import forward_args
from ._registry import get_method, register

_WRAPPERS = ("smoothgrad", "smoothgrad_sq", "vargrad")


def noise_tunnel(
    kind: str,
    model: nn.Module,
    inputs: torch.Tensor,
    target: TargetSpec,
    *,
    base: str,
    samples: int,
    sigma: float,
    generator: torch.Generator | None,
    base_options: Mapping[str, Any] | None,
    max_batch: int | None,
    progress: bool | None,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> Explanation:
    """Run ``base`` on ``samples`` noisy copies of each input and reduce (``kind``); every copy gets its
    sample's rows of ``forward_kwargs``."""
    x = check_inputs(inputs).detach()
    info = get_method(base)
    if info.kind != "gradient" or info.name in _WRAPPERS:
        raise ArgumentError(
            f"method: {kind} wraps a gradient method (e.g. 'saliency', 'integrated_gradients'); "
            f"{base!r} is a {info.kind} method."
        )
    if not isinstance(samples, int) or samples < 1:
        raise ArgumentError(f"samples: expected a positive int (noisy copies per input), got {samples!r}.")
    if sigma < 0:
        raise ArgumentError(f"sigma: expected a fraction of the input range >= 0, got {sigma!r}.")
    if base_options is not None and "forward_kwargs" in base_options:
        raise ArgumentError(
            f"base_options: holds forward_kwargs; pass forward_kwargs= to {kind} itself, which gives each "
            "noisy copy its sample's keyword arguments."
        )
    b = x.shape[0]
    fwd = forward_args(forward_kwargs, x)
    t = prepare_target(target, b, x.device)
    dims = tuple(range(1, x.dim()))
    std = sigma * (x.amax(dim=dims) - x.amin(dim=dims))  # [B], the paper's noise level
    with session(model) as s:
        if isinstance(t, torch.Tensor) and bool((t < 0).any()):

            def predict(xc: torch.Tensor, tc: torch.Tensor, kw: Mapping[str, Any]) -> torch.Tensor:
                with torch.no_grad():
                    r = resolve_chunk(model(xc, **kw), tc)
                assert isinstance(r, torch.Tensor)
                return r

            chunk = chunk_size(model, x, max_batch=max_batch, backward=False, fwd=fwd)
            t = with_target(predict, x, t, chunk=chunk, fwd=fwd)
        calls = s.calls
    noisy = x.repeat_interleave(samples, dim=0)
    view = (-1,) + (1,) * (x.dim() - 1)
    noise = torch.randn(noisy.shape, generator=generator, device=x.device, dtype=x.dtype)
    noisy = noisy + noise * std.repeat_interleave(samples).view(view)
    rep_t = t.repeat_interleave(samples) if isinstance(t, torch.Tensor) else t
    # the noisy copies' keyword arguments, already split (a value passed as it is stays so, even when
    # its first dimension happens to be B * samples)
    rep_fwd = (
        fwd.select(torch.arange(b, device=x.device).repeat_interleave(samples)) if fwd.per_sample else fwd
    )
    opts = dict(base_options or {})
    ex = info.fn(
        model,
        noisy,
        rep_t,
        layer=None,
        max_batch=max_batch,
        progress=progress,
        forward_kwargs=rep_fwd if rep_fwd else None,
        **opts,
    )
    m = ex.attributions.reshape(b, samples, *ex.attributions.shape[1:])
    if kind == "smoothgrad":
        attr = m.mean(dim=1)
    elif kind == "smoothgrad_sq":
        attr = (m * m).mean(dim=1)
    else:
        attr = m.var(dim=1, unbiased=False)
    return Explanation(
        attributions=attr,
        method=kind,
        target=t if isinstance(t, torch.Tensor) else None,
        meta={
            "noise_std": std,
            "options": {"base": base, "samples": samples, "sigma": sigma, "max_batch": max_batch, **opts},
            "passes": calls + int(ex.meta.get("passes", 0)),
        },
    )


def _make(kind: str, summary: str) -> None:
    @register(
        kind,
        kind="gradient",
        passes="samples x (the base method's passes)",
        summary=summary,
        paper="Smilkov et al. 2017, SmoothGrad; Adebayo et al. 2018 (VarGrad); Hooker et al. 2019 (squared)",
    )
    def method(
        model: nn.Module,
        inputs: torch.Tensor,
        target: TargetSpec = None,
        *,
        layer: Any = None,
        base: str = "saliency",
        samples: int = 16,
        sigma: float = 0.15,
        generator: torch.Generator | None = None,
        base_options: Mapping[str, Any] | None = None,
        max_batch: int | None = None,
        progress: bool | None = None,
        forward_kwargs: Mapping[str, Any] | None = None,
    ) -> Explanation:
        no_layer(kind, layer)
        return noise_tunnel(
            kind,
            model,
            inputs,
            target,
            base=base,
            samples=samples,
            sigma=sigma,
            generator=generator,
            base_options=base_options,
            max_batch=max_batch,
            progress=progress,
            forward_kwargs=forward_kwargs,
        )

    method.__name__ = method.__qualname__ = kind
    method.__doc__ = f"{summary} (see the module docstring for the papers)."


_make("smoothgrad", "mean of a gradient method over inputs with Gaussian noise")
_make("smoothgrad_sq", "mean of the squared gradient method over noisy inputs")
_make("vargrad", "variance of a gradient method over noisy inputs")
