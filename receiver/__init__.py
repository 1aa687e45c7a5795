"""receiver: Prometheus Alertmanager webhooks become incidents."""

__version__ = "0.1.0"
