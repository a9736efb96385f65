"""Load the model a command names: ``torchvision:NAME``, ``timm:NAME``, a TorchScript or saved-module
file, or ``path.py:factory`` plus a state dict; and the ImageNet-style preprocessing of image files."""

from __future__ import annotations

import importlib.util
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from netsight.errors import ArgumentError, UnknownNameError, closest

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "LoadedModel", "load_images", "load_model"]

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


def _torchvision(name: str, pretrained: bool) -> LoadedModel:
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
        return LoadedModel(models.get_model(name, weights=None).eval(), f"torchvision:{name}")
    weights = models.get_model_weights(name).DEFAULT
    try:
        model = models.get_model(name, weights=weights)
    except (OSError, RuntimeError, ValueError) as exc:  # no network, a proxy error, a bad download
        raise ArgumentError(
            f"--pretrained: the weights of torchvision:{name} are not cached and could not be downloaded "
            f"({exc}). Drop --pretrained to use random weights, or put the file in $TORCH_HOME/hub."
        ) from exc
    cats = weights.meta.get("categories")
    return LoadedModel(model.eval(), f"torchvision:{name}", tuple(cats) if cats else None)


def _timm(name: str, pretrained: bool) -> LoadedModel:
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
        state = torch.load(weights, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise ArgumentError(
                f"--weights: {str(weights)!r} does not fit {file.name}:{factory}() ({exc})."
            ) from exc
    return LoadedModel(model.eval(), f"{file}:{factory}")


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
    obj: Any = torch.load(path, map_location="cpu", weights_only=False)
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
    state dict to load into it.
    """
    kind, _, rest = spec.partition(":")
    if kind == "torchvision" and rest:
        return _torchvision(rest, pretrained)
    if kind == "timm" and rest:
        return _timm(rest, pretrained)
    if pretrained:
        raise ArgumentError(
            f"--pretrained: only torchvision:NAME and timm:NAME models have it, not {spec!r}."
        )
    if ".py:" in spec:
        file, _, factory = spec.rpartition(":")
        return _factory(Path(file), factory, Path(weights) if weights else None)
    if weights is not None:
        raise ArgumentError(
            f"--weights: a state dict needs the code that builds the model; pass --model file.py:factory, "
            f"not {spec!r}."
        )
    return _file(Path(spec))


def load_images(paths: list[Path], size: int = 224) -> tuple[torch.Tensor, torch.Tensor]:
    """Read image files and prepare them like ImageNet evaluation.

    Returns ``(pictures, inputs)``: ``pictures`` float ``[B, 3, size, size]`` in [0, 1] (the shorter side
    resized to ``size``, centre-cropped) for drawing, and ``inputs`` the same normalised with the
    ImageNet mean and standard deviation, for the model.
    """
    import numpy as np
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms import v2

    prep = v2.Compose([v2.Resize(size, antialias=True), v2.CenterCrop(size)])
    out = []
    for p in paths:
        if not p.is_file():
            raise ArgumentError(f"IMAGE: no such file {str(p)!r}.")
        try:
            with Image.open(p) as im:
                arr = np.asarray(im.convert("RGB"))
        except Image.DecompressionBombError as exc:
            raise ArgumentError(
                f"IMAGE: {str(p)!r} is too large to read safely ({exc}); shrink it first, or raise "
                "PIL.Image.MAX_IMAGE_PIXELS when you trust the file."
            ) from exc
        except (UnidentifiedImageError, OSError) as exc:
            raise ArgumentError(
                f"IMAGE: cannot read {str(p)!r} as an image ({exc}); use PNG or JPEG."
            ) from exc
        img = torch.from_numpy(arr.copy()).permute(2, 0, 1)  # uint8 [3, H, W]
        out.append(prep(img).float() / 255)
    pictures = torch.stack(out)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return pictures, (pictures - mean) / std
