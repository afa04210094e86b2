"""Errors of the model build and registry."""

from __future__ import annotations


class ModelError(Exception):
    """Base class of model errors."""


class ArtifactError(ModelError):
    """An artifact that cannot be trusted: missing files, bad manifest, or a hash mismatch."""


class NoProductionModel(ModelError):
    """No version has been promoted yet."""


class ImportFormatError(ModelError, ValueError):
    """A labeled-history file that does not follow docs/import-format.md."""


class NotEnoughData(ModelError, ValueError):
    """The history is too short or has no fraud in a split."""


class SplitError(ModelError, ValueError):
    """Split options that do not fit together or do not fit the history; the message names the option."""
