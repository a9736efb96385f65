"""Load the model a command names: ``torchvision:NAME``, ``timm:NAME``, a TorchScript or saved-module
file, or ``path.py:factory`` plus a state dict; and the preprocessing of image files (RGB or grayscale,
as the model's first convolution takes them, normalised with ``--mean``/``--std``)."""

from __future__ import annotations

import importlib.util
import pickle
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from netsight.errors import ArgumentError, UnknownNameError, closest

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LoadedModel",
    "input_channels",
    "load_images",
    "load_model",
    "load_weights",
    "normalisation",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to explain: in eval mode, with class names when its weights name them."""

    model: nn.Module
    spec: str
    categories: tuple[str, ...] | None = None
    scripted: bool = False


class ScriptedModel(nn.Module):
    """A plain module around a TorchScript one, which cannot take hooks itself.

    netsight observes the wrapper (inputs, outputs, gradients), so input-gradient and perturbation
    methods work; layer methods need hooks inside the model and so a Python model.
    """

    _scripted: nn.Module

    def __init__(self, scripted: nn.Module) -> None:
        super().__init__()
        # Not registered as a submodule: module walks (hooks, probes) must not reach into TorchScript.
        object.__setattr__(self, "_scripted", scripted)

    def forward(self, *args: Any) -> Any:
        return self._scripted(*args)

    def _apply(self, fn: Any, recurse: bool = True) -> ScriptedModel:  # .to(device), .float(), ...
        inner: Any = self._scripted
        inner._apply(fn)
        outer: Any = super()
        outer._apply(fn, recurse)
        return self

    def train(self, mode: bool = True) -> ScriptedModel:
        self._scripted.train(mode)
        super().train(mode)
        return self


def _torchvision(name: str, pretrained: bool, weights: Path | None) -> LoadedModel:
    try:
        from torchvision import models
    except ImportError as exc:
        raise ArgumentError(
            f"model: 'torchvision:{name}' needs torchvision; pip install 'netsight[vision]'."
        ) from exc
    known = models.list_models()
    if name not in known:
        near = closest(name, known)
        hint = f" Did you mean {', '.join(repr(n) for n in near)}?" if near else ""
        raise UnknownNameError(f"model: torchvision has no model {name!r}.{hint}")
    if not pretrained:
        model = models.get_model(name, weights=None)
        if weights is not None:
            load_weights(model, weights, f"torchvision:{name}")
        return LoadedModel(model.eval(), f"torchvision:{name}")
    published = models.get_model_weights(name).DEFAULT
    try:
        model = models.get_model(name, weights=published)
    except (OSError, RuntimeError, ValueError) as exc:  # no network, a proxy error, a bad download
        raise ArgumentError(
            f"--pretrained: the weights of torchvision:{name} are not cached and could not be downloaded "
            f"({exc}). Drop --pretrained to use random weights, or put the file in $TORCH_HOME/hub."
        ) from exc
    cats = published.meta.get("categories")
    return LoadedModel(model.eval(), f"torchvision:{name}", tuple(cats) if cats else None)


def _timm(name: str, pretrained: bool, weights: Path | None) -> LoadedModel:
    try:
        import timm
    except ImportError as exc:
        raise ArgumentError(f"model: 'timm:{name}' needs timm; pip install timm.") from exc
    known = timm.list_models()
    if name not in known:
        near = closest(name, known)
        hint = f" Did you mean {', '.join(repr(n) for n in near)}?" if near else ""
        raise UnknownNameError(f"model: timm has no model {name!r}.{hint} List them with timm.list_models().")
    try:
        model = timm.create_model(name, pretrained=pretrained)
    except (OSError, RuntimeError, ValueError) as exc:
        if not pretrained:
            raise
        raise ArgumentError(
            f"--pretrained: the weights of timm:{name} are not cached and could not be downloaded ({exc}). "
            "Drop --pretrained to use random weights."
        ) from exc
    if weights is not None:
        load_weights(model, weights, f"timm:{name}")
    return LoadedModel(model.eval(), f"timm:{name}")


def _factory(file: Path, factory: str, weights: Path | None) -> LoadedModel:
    if not file.is_file():
        raise ArgumentError(f"model: no Python file {str(file)!r}; pass 'path/to/file.py:factory'.")
    spec = importlib.util.spec_from_file_location(f"netsight_user_model_{file.stem}", file)
    if spec is None or spec.loader is None:
        raise ArgumentError(f"model: cannot import {str(file)!r} as a Python module.")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fn = getattr(module, factory, None)
    if not callable(fn):
        names = [n for n in dir(module) if callable(getattr(module, n)) and not n.startswith("_")]
        near = closest(factory, names)
        hint = f" Did you mean {', '.join(repr(n) for n in near)}?" if near else ""
        raise ArgumentError(f"model: {str(file)!r} has no callable {factory!r}.{hint}")
    model = fn()
    if not isinstance(model, nn.Module):
        raise ArgumentError(
            f"model: {file.name}:{factory}() returned {type(model).__name__}, not a torch.nn.Module."
        )
    if weights is not None:
        load_weights(model, weights, f"{file.name}:{factory}()")
    return LoadedModel(model.eval(), f"{file}:{factory}")


def _read_state_dict(weights: Path) -> dict[str, Any]:
    """The state dict in ``weights`` (also inside a ``{"state_dict": ...}`` checkpoint), read safely."""
    fix = "pass a file written by torch.save(model.state_dict(), PATH)"
    if weights.is_dir():
        raise ArgumentError(f"--weights: {str(weights)!r} is a folder; {fix}.")
    if not weights.is_file():
        raise ArgumentError(f"--weights: no such file {str(weights)!r}; {fix}.")
    try:
        state: Any = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types for a file it cannot read
        if not zipfile.is_zipfile(weights):  # torch.save writes zip archives (since torch 1.6)
            why = "it is not a file torch.save wrote"
        elif "Weights only load failed" in str(exc):
            raise ArgumentError(
                f"--weights: {str(weights)!r} holds more than tensors (a whole saved module?); pass it as "
                f"--model {weights} without --weights, or save model.state_dict() and pass that."
            ) from exc
        else:
            why = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"
        msg = f"--weights: cannot read {str(weights)!r} as a state dict ({why}); {fix}."
        raise ArgumentError(msg) from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        kind = type(state).__name__
        raise ArgumentError(f"--weights: {str(weights)!r} holds a {kind}, not a state dict; {fix}.")
    return state


def _names(keys: list[str]) -> str:
    shown = ", ".join(keys[:3])
    return shown + (f", ... ({len(keys) - 3} more)" if len(keys) > 3 else "")


def load_weights(model: nn.Module, weights: Path, what: str) -> None:
    """Load the state dict in ``weights`` into ``model`` strictly; a mismatch fails with a short summary
    (counts of missing and unexpected keys and of shape mismatches, with the first names of each)."""
    state = _read_state_dict(weights)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys ({_names(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys ({_names(unexpected)})")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatches (file vs model: {_names(shapes)})")
    if problems:
        hint = ""
        if unexpected and all(k.startswith("module.") for k in unexpected):
            hint = " Its keys start with 'module.' (saved from DataParallel): save model.module.state_dict()."
        raise ArgumentError(
            f"--weights: {str(weights)!r} does not fit {what}: {'; '.join(problems)}.{hint} Pass the state "
            "dict of this very architecture."
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # e.g. a dtype that cannot be copied
        first = (str(exc).strip().splitlines() or [""])[0]
        raise ArgumentError(f"--weights: {str(weights)!r} does not fit {what} ({first}).") from exc


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives are zip files holding compiled ``code/``; ``torch.save`` files hold no code."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(n.split("/", 2)[1:2] == ["code"] for n in zf.namelist())


def _file(path: Path) -> LoadedModel:
    if not path.is_file():
        raise ArgumentError(
            f"model: {str(path)!r} is not a file, nor 'torchvision:NAME', 'timm:NAME' or 'file.py:factory'."
        )
    if path.suffix == ".pt2":
        program = torch.export.load(str(path))
        return LoadedModel(program.module(), str(path))
    if _is_torchscript(path):
        with warnings.catch_warnings():
            # torch >= 2.10 marks TorchScript deprecated; loading a file the user names is still supported.
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            scripted = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
        return LoadedModel(ScriptedModel(scripted).eval(), str(path), scripted=True)
    # A whole pickled module: unpickling runs code from the file, so only load files you trust.
    try:
        obj: Any = torch.load(path, map_location="cpu", weights_only=False)
    except ModuleNotFoundError as exc:
        mod = exc.name or str(exc)
        raise ArgumentError(
            f"model: the saved module {str(path)!r} refers to Python module {mod!r}, which must be "
            f"importable to load it: put the folder holding {mod.split('.')[0]}.py on PYTHONPATH, or pass "
            "the code as --model file.py:factory --weights state_dict.pt."
        ) from exc
    except AttributeError as exc:  # the class was defined in a script (__main__) or has been renamed
        raise ArgumentError(
            f"model: the saved module {str(path)!r} refers to a class Python cannot find ({exc}); pass the "
            "code as --model file.py:factory --weights state_dict.pt (save model.state_dict())."
        ) from exc
    except (pickle.UnpicklingError, EOFError, RuntimeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ArgumentError(
            f"model: cannot read {str(path)!r} as a saved model ({first}); pass a TorchScript file, a "
            "torch.save(model) file, torchvision:NAME, timm:NAME or file.py:factory."
        ) from exc
    if isinstance(obj, nn.Module):
        return LoadedModel(obj.eval(), str(path))
    if isinstance(obj, dict):
        raise ArgumentError(
            f"model: {str(path)!r} holds a state dict, not a module. Pass the code that builds the model "
            f"as 'model.py:factory' and this file as --weights {path}."
        )
    raise ArgumentError(f"model: {str(path)!r} holds a {type(obj).__name__}, not a torch.nn.Module.")


def load_model(spec: str, *, weights: str | Path | None = None, pretrained: bool = False) -> LoadedModel:
    """Load the model ``spec`` names, in eval mode.

    ``torchvision:resnet18`` (random weights unless ``pretrained``), ``timm:vit_tiny_patch16_224``, a
    TorchScript file, a ``torch.export`` program (``.pt2``), a saved module (``torch.save(model, "m.pt")``;
    unpickling runs code, so only load
    files you trust), or ``model.py:factory`` whose ``factory()`` builds the module, with ``weights`` a
    state dict to load into it. ``weights`` also loads into a torchvision or timm model (strictly).
    """
    kind, _, rest = spec.partition(":")
    path = Path(weights) if weights is not None else None
    if pretrained and path is not None:
        raise ArgumentError(
            f"--weights: {str(path)!r} would replace the --pretrained weights; pass one of the two."
        )
    if kind == "torchvision" and rest:
        return _torchvision(rest, pretrained, path)
    if kind == "timm" and rest:
        return _timm(rest, pretrained, path)
    if pretrained:
        raise ArgumentError(
            f"--pretrained: only torchvision:NAME and timm:NAME models have it, not {spec!r}."
        )
    if ".py:" in spec:
        file, _, factory = spec.rpartition(":")
        return _factory(Path(file), factory, path)
    if path is not None:
        raise ArgumentError(
            f"--weights: {str(path)!r} only applies to torchvision:NAME, timm:NAME and file.py:factory "
            f"models; {spec!r} is a saved model that carries its own weights. Drop --weights, or pass the "
            "code that builds the model as --model file.py:factory."
        )
    return _file(Path(spec))


def input_channels(model: nn.Module) -> int | None:
    """``in_channels`` of the model's first 2-d convolution (also inside TorchScript); None without one."""
    modules = model._scripted.modules() if isinstance(model, ScriptedModel) else model.modules()
    for m in modules:
        if isinstance(m, nn.Conv2d) or getattr(m, "original_name", None) == "Conv2d":
            channels = getattr(m, "in_channels", None)
            if isinstance(channels, int):
                return channels
    return None


def normalisation(
    channels: int, mean: str | None, std: str | None
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The per-channel ``(mean, std)`` from ``--mean``/``--std`` (comma-separated floats, one per channel
    or one for all); defaults: ImageNet's for 3 channels, mean 0 and std 1 (pixels in [0, 1], as the MNIST
    demo feeds its model) for 1 channel."""
    default_mean, default_std = (IMAGENET_MEAN, IMAGENET_STD) if channels == 3 else ((0.0,), (1.0,))
    out = []
    for option, text, default in (("--mean", mean, default_mean), ("--std", std, default_std)):
        values: tuple[float, ...]
        if text is None:
            values = default
        else:
            try:
                values = tuple(float(v) for v in text.split(","))
            except ValueError:
                raise ArgumentError(
                    f"{option}: expected comma-separated numbers, got {text!r}; pass one for all channels "
                    f"({option} 0.5) or one per channel ({option} 0.5,0.5,0.5)."
                ) from None
        if len(values) == 1:
            values = values * channels
        if len(values) != channels:
            raise ArgumentError(
                f"{option}: got {len(values)} values ({text}) for a model that takes {channels} input "
                "channels; pass one value per channel or one for all."
            )
        out.append(tuple(values))
    if any(not v > 0 for v in out[1]):
        raise ArgumentError(f"--std: expected values above 0, got {std}; pass e.g. --std 1.")
    return out[0], out[1]


def load_images(
    paths: list[Path],
    size: int = 224,
    *,
    channels: int = 3,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Read image files and prepare them like ImageNet evaluation.

    Returns ``(pictures, inputs)``: ``pictures`` float ``[B, 3, size, size]`` in [0, 1] (the shorter side
    resized to ``size``, centre-cropped; grayscale shown as RGB) for drawing, and ``inputs`` float
    ``[B, channels, size, size]``, the images read as RGB (``channels=3``) or grayscale (``channels=1``),
    normalised with ``mean`` and ``std`` (one value per channel), for the model.
    """
    import numpy as np
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms import v2

    if channels not in (1, 3):
        raise ArgumentError(
            f"model: its first convolution takes {channels} input channels; netsight explain reads images "
            "as 1 (grayscale) or 3 (RGB) channels."
        )
    prep = v2.Compose([v2.Resize(size, antialias=True), v2.CenterCrop(size)])
    out = []
    for p in paths:
        if p.is_dir():
            raise ArgumentError(f"IMAGE: {str(p)!r} is a folder; pass image files, e.g. {p / '*.png'}.")
        if not p.is_file():
            raise ArgumentError(f"IMAGE: no such file {str(p)!r}.")
        try:
            with Image.open(p) as im:
                arr = np.asarray(im.convert("RGB" if channels == 3 else "L"))
        except Image.DecompressionBombError as exc:
            raise ArgumentError(
                f"IMAGE: {str(p)!r} is too large to read safely ({exc}); shrink it first, or raise "
                "PIL.Image.MAX_IMAGE_PIXELS when you trust the file."
            ) from exc
        except (UnidentifiedImageError, OSError) as exc:
            raise ArgumentError(
                f"IMAGE: cannot read {str(p)!r} as an image ({exc}); use PNG or JPEG."
            ) from exc
        img = torch.from_numpy(arr.copy())
        img = img[None] if img.dim() == 2 else img.permute(2, 0, 1)  # uint8 [channels, H, W]
        out.append(prep(img).float() / 255)
    seen = torch.stack(out)  # [B, channels, size, size] in [0, 1]
    m = torch.tensor(mean).view(1, channels, 1, 1)
    s = torch.tensor(std).view(1, channels, 1, 1)
    return seen.expand(-1, 3, -1, -1).contiguous(), (seen - m) / s
