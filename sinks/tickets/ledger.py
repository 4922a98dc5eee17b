"""Which tickets an incident has: one per system, kept in Redis by the alert's fingerprint."""

from __future__ import annotations

import json
from dataclasses import asdict

import redis

from sinks.tickets.ticket import Ticket
from symphony import keys


class TicketLedger:
    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    def find(self, fingerprint: str, system: str) -> Ticket | None:
        raw = self._client.hget(keys.incident_tickets_key(fingerprint), system)
        return None if raw is None else Ticket(**json.loads(raw))

    def keep(self, fingerprint: str, ticket: Ticket) -> None:
        self._client.hset(keys.incident_tickets_key(fingerprint), ticket.system, json.dumps(asdict(ticket)))
