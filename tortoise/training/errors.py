"""Errors of the fine-tuning core: each one says what went wrong and what to do about it."""

from tortoise.errors import TortoiseError


class TrainingError(TortoiseError):
    """A training run cannot start or go on: bad config, dataset, checkpoint, resume state or disk."""


class DatasetError(TrainingError):
    """The dataset lists are missing, empty, or leave too few usable clips for the configured batch."""


class ResumeError(TrainingError):
    """A resume state is missing, unreadable, or does not fit the current model and configuration."""
