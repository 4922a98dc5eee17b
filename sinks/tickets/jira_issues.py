"""Jira Cloud tickets over REST v3: an issue per incident, the bundle attached.

- ``POST /rest/api/3/issue`` with ``fields`` (project key, summary, issue type, labels) and an
  Atlassian Document Format ``description``;
- ``POST /rest/api/3/issue/{key}/attachments``, multipart field ``file``, with the header
  ``X-Atlassian-Token: no-check`` (Jira refuses uploads without it);
- later evidence: ``POST /rest/api/3/issue/{key}/comment`` (an ADF ``body``) and the attachment.

Basic authentication with the account's e-mail and API token, in the header only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from sinks.tickets.ticket import Ticket, TicketError, TicketNote

TIMEOUT_S = 30.0
ISSUE_TYPE = "Bug"


def adf(text: str, link: str = "") -> dict[str, Any]:
    """Text as an Atlassian Document Format document: a paragraph per line, then the link."""
    content: list[dict[str, Any]] = [
        {"type": "paragraph", "content": [{"type": "text", "text": line}]}
        for line in text.splitlines()
        if line
    ]
    if link:
        mark = {"type": "link", "attrs": {"href": link}}
        content.append({"type": "paragraph", "content": [{"type": "text", "text": link, "marks": [mark]}]})
    return {"type": "doc", "version": 1, "content": content}


@dataclass(frozen=True)
class JiraIssues:
    url: str  # https://<site>.atlassian.net
    email: str
    token: str
    project: str
    name: str = "jira"

    def _client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url.rstrip("/"),
            auth=(self.email, self.token),
            headers={"Accept": "application/json"},
            timeout=TIMEOUT_S,
        )

    def open(self, note: TicketNote) -> Ticket:
        with self._client() as client:
            fields = {
                "project": {"key": self.project},
                "summary": note.title[:255],
                "issuetype": {"name": ISSUE_TYPE},
                "labels": ["symphony-incident", "evidence"],
                "description": adf(f"{note.body}\nEvidence bundle sha256: {note.bundle_sha256}"),
            }
            created = _json(client.post("/rest/api/3/issue", json={"fields": fields}), "create the issue")
            key = str(created["key"])
            attachment = self._attach(client, key, note)
            return Ticket(self.name, key, f"{self.url.rstrip('/')}/browse/{key}", attachment)

    def comment(self, ticket: Ticket, note: TicketNote) -> str:
        with self._client() as client:
            attachment = self._attach(client, ticket.key, note)
            body = adf(f"{note.body}\nEvidence bundle sha256: {note.bundle_sha256}", attachment)
            _json(client.post(f"/rest/api/3/issue/{ticket.key}/comment", json={"body": body}), "comment")
            return attachment

    def _attach(self, client: httpx.Client, key: str, note: TicketNote) -> str:
        response = client.post(
            f"/rest/api/3/issue/{key}/attachments",
            headers={"X-Atlassian-Token": "no-check"},
            files={"file": (note.bundle_name, note.bundle, "application/zip")},
        )
        attachments = _json(response, "attach the bundle")
        return str(attachments[0]["content"])


def _json(response: httpx.Response, what: str) -> Any:
    if response.status_code >= 300:
        raise TicketError(f"Jira refused to {what}: HTTP {response.status_code} {response.text[:300]}")
    return response.json()
