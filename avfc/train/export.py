"""Export trained weights as a safetensors file (the zoo's format) and read them back.

The file holds the model's state dict (optionally as float16) and, in the safetensors
metadata key ``avfc`` (JSON), the architecture name and its constructor arguments, so that
:func:`load_exported` can rebuild the model and a zoo entry can be written from it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from avfc.errors import ConfigError, ModelMismatchError
from avfc.models.base import AnimationModel
from avfc.models.zoo import ARCHS, file_sha256

_DTYPES = {"float32": torch.float32, "float16": torch.float16}


def export_model(model: AnimationModel, path: str | os.PathLike[str], dtype: str = "float32") -> str:
    """Write ``model``'s state dict to ``path`` (safetensors) and return the file's sha256.

    Floating-point tensors are stored as ``dtype`` (``"float32"`` or ``"float16"``; the zoo's
    loader casts them back to float32); integer buffers are kept as they are.
    """
    if dtype not in _DTYPES:
        raise ConfigError(f"export dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    state = {}
    for key, value in model.state_dict().items():
        value = value.detach().cpu()
        if value.is_floating_point():
            value = value.to(_DTYPES[dtype])
        state[key] = value.contiguous()
    # one metadata key: safetensors writes a metadata map in no fixed order, and the file's
    # sha256 must depend on the weights alone
    meta = {"avfc": json.dumps({"arch": model.arch, "config": model.config_dict(), "dtype": dtype}, sort_keys=True)}
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    save_file(state, str(tmp), metadata=meta)
    os.replace(tmp, out)
    return file_sha256(out)


def load_exported(path: str | os.PathLike[str]) -> AnimationModel:
    """Rebuild the model saved by :func:`export_model`, in eval mode (float32 weights)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path))
    except (OSError, SafetensorError) as exc:
        raise ModelMismatchError(f"cannot read exported weights {str(path)!r}: {exc}") from exc
    try:
        info = json.loads(meta.get("avfc", "{}"))
    except json.JSONDecodeError as exc:
        raise ModelMismatchError(f"exported weights {str(path)!r} carry bad metadata: {exc}") from exc
    arch = info.get("arch") if isinstance(info, dict) else None
    config = info.get("config") if isinstance(info, dict) else None
    if arch not in ARCHS:
        raise ModelMismatchError(f"exported weights {str(path)!r} name unknown architecture {arch!r}")
    if not isinstance(config, dict):
        raise ModelMismatchError(f"exported weights {str(path)!r} carry no architecture config")
    model = ARCHS[arch](**config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelMismatchError(f"exported weights {str(path)!r} do not fit {arch}: {exc}") from exc
    return model.eval()
