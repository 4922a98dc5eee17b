"""Bytewax dataflows of the control plane, the Redis Streams source and the engine that runs them."""
