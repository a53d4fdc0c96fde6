"""emaseg: deployable EMANet semantic segmentation.

Entry points: `build_model(config)` for a fresh model, `load_model(path)` for a trained one,
`get_config(name)` for a named configuration; `emaseg.runtime` for the C++ runtime, and
`emaseg.cmake_prefix_path` for an app's find_package(emaseg).

The names load on first use (PEP 562), so `import emaseg` does not import torch: the `ema_seg`
launcher and `emaseg.cmake_prefix_path` start in milliseconds.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> the submodule that defines it
_LAZY = {
    "CheckpointError": "checkpoint", "load_checkpoint": "checkpoint", "load_model": "checkpoint",
    "save_checkpoint": "checkpoint",
    "CONFIGS": "config", "Config": "config", "get_config": "config",
    "EMANet": "models", "build_model": "models",
}

__all__ = ["CONFIGS", "CheckpointError", "Config", "EMANet", "__version__", "build_model",
           "cmake_prefix_path", "get_config", "load_checkpoint", "load_model", "save_checkpoint"]

if TYPE_CHECKING:
    from .checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
    from .config import CONFIGS, Config, get_config
    from .models import EMANet, build_model
    cmake_prefix_path: str


def __getattr__(name: str) -> Any:
    if name == "cmake_prefix_path":  # computed each time: it follows the install, like torch's
        from .installed import cmake_prefix_path
        return cmake_prefix_path()
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'emaseg' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
