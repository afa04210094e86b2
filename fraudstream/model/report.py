"""Rich tables for a model: metrics against the baselines, thresholds, training figures."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from fraudstream.model.metrics import METRIC_NAMES

_LABELS = {
    "model": "LightGBM (this model)",
    "logistic_regression": "logistic regression, same features",
    "seed_random_forest": "seed: random forest, 4 columns",
}


def metrics_table(manifest: dict[str, Any]) -> Table:
    """Held-out test metrics, model vs both baselines (best per column in bold)."""
    window = manifest["training_window"]["test"]
    return metrics_grid(f"{manifest['version']}: held-out test {window['start'][:10]} → {window['end'][:10]}",
                        manifest["metrics"])


def metrics_grid(title: str, metrics: dict[str, dict[str, float]]) -> Table:
    """One row per scored model (or run) and one column per metric, best per column in bold."""
    grid = Table(title=title)
    grid.add_column("model")
    for name in METRIC_NAMES:
        grid.add_column(name.replace("_", " "), justify="right")
    best = {name: max(values[name] for values in metrics.values()) for name in METRIC_NAMES}
    for key in sorted(
        metrics, key=lambda name: (name not in _LABELS, list(_LABELS).index(name) if name in _LABELS else 0)
    ):
        values = metrics[key]
        cells = [f"[bold]{values[n]:.4f}[/]" if values[n] == best[n] else f"{values[n]:.4f}" for n in METRIC_NAMES]
        grid.add_row(_LABELS.get(key, key), *cells)
    return grid


def summary_table(manifest: dict[str, Any]) -> Table:
    """Thresholds, data, and how the build went."""
    thresholds = manifest["thresholds"]
    training = manifest["training"]
    grid = Table(title=f"{manifest['version']}: build", show_header=False)
    grid.add_column("what")
    grid.add_column("value")
    costs = thresholds["costs"]
    rows = [
        ("created", manifest["created_at"]),
        ("feature code", f"v{manifest['feature_code_version']}, {len(manifest['feature_names'])} features"),
        *(
            (f"{part} rows", f"{rows:,} ({manifest['fraud_rows'][part]:,} fraud)")
            for part, rows in manifest["rows"].items()
        ),
        (
            "train window",
            f"{manifest['training_window']['train']['start']} → {manifest['training_window']['train']['end']}",
        ),
        ("thresholds", f"review ≥ {thresholds['review']:.4f}, block ≥ {thresholds['block']:.4f}"),
        (
            "costs",
            f"missed fraud {costs['missed_fraud']:g}, review {costs['review']:g}, "
            f"declined legit {costs['declined_legit']:g}",
        ),
        (
            "test review / block rate",
            f"{manifest['metrics']['model']['review_rate']:.2%} / {manifest['metrics']['model']['block_rate']:.2%}",
        ),
        ("boosting rounds", str(training["rounds"])),
        (
            "feature replay",
            f"{training['replay_events_per_second']:,.0f} events/s wall, "
            f"{training['replay_events_per_cpu_second']:,.0f} per CPU-second, "
            f"{manifest.get('replay_partitions', 'one')} partition states",
        ),
        ("seconds", ", ".join(f"{k} {v:.1f}" for k, v in training["seconds"].items())),
    ]
    for row in rows:
        grid.add_row(*row)
    return grid
