"""CLI commands, one module per area; each exposes ``register(app)``."""

from __future__ import annotations

import importlib

import typer

#: Modules under fraudstream.commands that add commands to the root app, in help order.
AREAS = ("services", "topics", "db", "simulate", "model", "process", "spark", "monitoring", "console", "demo")


def register_all(app: typer.Typer) -> None:
    for area in AREAS:
        importlib.import_module(f"fraudstream.commands.{area}").register(app)
