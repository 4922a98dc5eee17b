"""The provider simulator: each provider's wire format and paths, latency, token accounting,
rate limits, faults set at runtime and a ground-truth quality per arm and task.

Public surface: ``create_app`` (the ASGI app, for tests and embedding),
``run_simulator`` (blocking, for the CLI) and ``BackgroundServer`` (serve any ASGI
app on uvicorn in a thread, for tests and the demo).
"""

from simulator.app import create_app, run_simulator
from simulator.background import BackgroundServer

__all__ = ["BackgroundServer", "create_app", "run_simulator"]
