"""Training on a selection: LoRA SFT (trl + peft, completion-only loss), IterIT's iterative
selection during training, and DELIA's diverse mixing. See docs/train.md."""

from .config import TrainConfig
from .runner import train
from .sft import TrainResult, read_config

__all__ = ["TrainConfig", "TrainResult", "read_config", "train"]
