"""emaseg: deployable EMANet semantic segmentation.

Entry points: `build_model(config)` for a fresh model, `load_model(path)` for a trained one,
`get_config(name)` for a named configuration.

Attributes are imported lazily: tools that only need NumPy/OpenCV parts (the synthetic data
generator, for one) should not pay torch's import time.
"""
import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "CheckpointError": "checkpoint", "load_checkpoint": "checkpoint", "load_model": "checkpoint",
    "save_checkpoint": "checkpoint", "CONFIGS": "config", "Config": "config", "get_config": "config",
    "EMANet": "models", "build_model": "models",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'emaseg' has no attribute {name!r}")
