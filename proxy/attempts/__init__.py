"""Serving a routed request: the attempt loop over the candidates, one attempt, the pooled
upstream client, the stream relay and the quota gate."""
