"""Choosing the arm: the candidates for a request, latency estimates, the health breaker,
the challenger distribution read from Redis, and the router that draws from the policy."""
