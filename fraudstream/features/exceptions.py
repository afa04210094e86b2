"""Errors of the feature core."""

from __future__ import annotations


class FeatureError(Exception):
    """Base class of feature-core errors."""


class StateFormatError(FeatureError):
    """A state snapshot that this code cannot read (wrong format or version)."""


class MissingColumnsError(FeatureError, ValueError):
    """A batch lacks columns the feature core needs."""
