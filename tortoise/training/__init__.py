"""Fine-tuning of the TorToiSe autoregressive model on a voice dataset, as mrq's AI Voice Cloning did with
DL-Art-School, in plain PyTorch. Run it with `python -m tortoise.training --config train.yaml`.
"""

from tortoise.training.config import TrainerConfig, load_config
from tortoise.training.errors import DatasetError, ResumeError, TrainingError
from tortoise.training.memory import release_memory, resident_bytes
from tortoise.training.metrics import read_metrics
from tortoise.training.trainer import Trainer, TrainingResult, train

__all__ = [
    "DatasetError",
    "ResumeError",
    "Trainer",
    "TrainerConfig",
    "TrainingError",
    "TrainingResult",
    "load_config",
    "read_metrics",
    "release_memory",
    "resident_bytes",
    "train",
]
