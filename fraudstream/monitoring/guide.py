"""Where the dashboards are and how to open them, as `fraudstream demo` prints it at the end."""

from __future__ import annotations

from datetime import datetime, timedelta

from fraudstream.config import Settings
from fraudstream.services import prometheus

#: Where a Grafana started as in the README listens.
GRAFANA_URL = "http://localhost:3000"
OVERVIEW_UID = "fraudstream-fraud-overview"
HEALTH_UID = "fraudstream-pipeline-health"


def overview_link(start: datetime | None = None, end: datetime | None = None) -> str:
    """The Fraud overview, over [start, end] when given (a simulated clock's event times are not "now")."""
    link = f"{GRAFANA_URL}/d/{OVERVIEW_UID}"
    if start is not None and end is not None:
        first = start.replace(second=0, microsecond=0)
        last = end + timedelta(minutes=1)
        link += f"?from={int(first.timestamp() * 1000)}&to={int(last.timestamp() * 1000)}"
    return link


def where_to_look(settings: Settings, start: datetime | None = None, end: datetime | None = None) -> list[str]:
    """Lines naming the provisioning, the dashboards' links and Prometheus, whether it runs or not."""
    running = prometheus.healthy(settings)
    return [
        "[bold]dashboards[/]: Grafana provisioning in deploy/grafana (README, section Monitoring: one docker run)",
        f"  Fraud overview for this run: {overview_link(start, end)}",
        f"  Pipeline health: {GRAFANA_URL}/d/{HEALTH_UID}",
        f"  Prometheus: {prometheus.url(settings)}" if running
        else "  Prometheus and the view refresher: `fraudstream services up monitoring`",
    ]
