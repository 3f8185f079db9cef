"""The exceptions unitdissect raises; only the CLI turns them into one-line messages."""

from __future__ import annotations


class UnitDissectError(Exception):
    """Base class of every error caused by a user's input or environment."""

    hint: str | None = None

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint


class ConfigError(UnitDissectError, ValueError):
    """An option, spec or config value is invalid."""


class SpecError(ConfigError):
    """A model, dataset or segmenter spec cannot be parsed or resolved."""


class DatasetError(UnitDissectError, ValueError):
    """A dataset directory or file is missing, malformed or inconsistent."""


class BadSampleError(DatasetError):
    """One sample (image or mask) is unreadable or inconsistent; builders may skip it."""


class LayerError(UnitDissectError, KeyError):
    """A layer name does not exist in the model."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class WeightsError(UnitDissectError, ValueError):
    """A weights file is unreadable, unsafe, or does not fit the model."""


class ArchiveError(UnitDissectError, ValueError):
    """An archive is missing, corrupt, unsafe or fails verification."""
