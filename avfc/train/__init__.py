"""Training of the animation models: data, losses, configurations, the loop and export.

``train(config) -> path`` is the entry point (``avfc train`` calls it); ``python -m avfc.train``
runs it from the command line.
"""

from avfc.train.configs import PRESETS, TrainConfig, get_config, load_config
from avfc.train.export import export_model, load_exported
from avfc.train.trainer import train

__all__ = ["PRESETS", "TrainConfig", "export_model", "get_config", "load_config", "load_exported", "train"]
