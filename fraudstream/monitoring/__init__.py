"""Monitoring as code: Grafana dashboards over the per-minute views, Prometheus for the processors."""
