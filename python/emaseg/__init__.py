"""emaseg: deployable EMANet semantic segmentation.

Entry points: `build_model(config)` for a fresh model, `load_model(path)` for a trained one,
`get_config(name)` for a named configuration.
"""
from .checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from .config import CONFIGS, Config, get_config
from .models import EMANet, build_model

__version__ = "0.1.0"

__all__ = ["CONFIGS", "CheckpointError", "Config", "EMANet", "__version__", "build_model", "get_config",
           "load_checkpoint", "load_model", "save_checkpoint"]
