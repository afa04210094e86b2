"""Errors of the database layer, each naming what to fix."""

from __future__ import annotations


class StoreError(RuntimeError):
    """Base class: the database holds something the engines cannot work with."""


class FeatureOrderMismatch(StoreError):
    """A model version is registered with other feature names than the model being loaded has."""
