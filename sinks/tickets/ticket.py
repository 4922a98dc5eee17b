"""What every ticket system is given and hands back (``github_issues``, ``jira_issues``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class TicketError(Exception):
    """A ticket system refused a call or did not answer; the message says which and why."""


@dataclass(frozen=True)
class TicketNote:
    """One incident's evidence as a ticket (or a comment on it) says it."""

    title: str
    body: str  # plain text, already redacted
    bundle_name: str
    bundle: bytes
    bundle_sha256: str


@dataclass(frozen=True)
class Ticket:
    system: str  # github | jira
    key: str  # the issue number or the Jira key
    url: str
    bundle_url: str  # where the first bundle is (asset or attachment)


class TicketSystem(Protocol):
    @property
    def name(self) -> str: ...

    def open(self, note: TicketNote) -> Ticket: ...

    def comment(self, ticket: Ticket, note: TicketNote) -> str:
        """Add the note to ``ticket``; return where its bundle is."""
        ...
