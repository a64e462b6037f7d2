"""Shipped weights: safetensors files (float16 on disk, float32 in memory) with a JSON config.

A file holds one network's `state_dict` plus metadata: `config` (the architecture, JSON)
and free-form `info` (JSON: how it was trained). Loading never unpickles anything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Union

import torch
from torch import nn

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
"""The folder of the shipped digit weights (package data)."""


def weights_path(name: str) -> Path:
    """The shipped file `models/weights/<name>.safetensors`."""
    return WEIGHTS_DIR / f"{name}.safetensors"


def save(module: nn.Module, path: Union[str, Path], config: dict, info: Optional[dict] = None,
         dtype: torch.dtype = torch.float16) -> Path:
    """Write `module`'s float tensors as `dtype` with `config` / `info` metadata."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: (v.detach().to(dtype) if v.is_floating_point() else v.detach()).contiguous().cpu()
             for k, v in module.state_dict().items()}
    save_file(state, str(path), metadata={"config": json.dumps(config), "info": json.dumps(info or {})})
    path.chmod(0o644)  # package data: readable by all
    return path


def read(path: Union[str, Path]) -> tuple[dict[str, torch.Tensor], dict, dict]:
    """`(state_dict in float32, config, info)` of a weights file."""
    from safetensors import safe_open

    from ...errors import ConfigError

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"weights file {str(path)!r} does not exist; train it with the scripts in scripts/")
    state: dict[str, torch.Tensor] = {}
    with safe_open(str(path), framework="pt") as f:
        meta: dict[str, Any] = f.metadata() or {}
        for k in f.keys():
            t = f.get_tensor(k)
            state[k] = t.float() if t.is_floating_point() else t
    return state, json.loads(meta.get("config", "{}")), json.loads(meta.get("info", "{}"))
