"""Durations as people read them: the two largest units (``2h05m``, ``4m10s``, ``850ms``)."""

from __future__ import annotations


def format_ms(ms: int | None) -> str:
    """``None`` → ``-``; else the two largest units: ``2h05m``, ``4m10s``, ``850ms``."""
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms}ms"
    seconds = ms // 1000
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
