"""Sinks: where the control plane's facts and state land (ClickHouse first)."""
