"""GitHub tickets over its REST API: an issue per incident, the bundle a release asset.

GitHub's API cannot attach a file to an issue, so each bundle is uploaded as an asset of
one release, tagged ``evidence`` (made on first use), and the issue or comment links it:

- ``GET /repos/{repo}/releases/tags/evidence``, or ``POST /repos/{repo}/releases`` to make it;
- ``POST {upload_url}?name=<bundle>.wacz`` with ``Content-Type: application/zip`` (an asset
  of that name already there, 422 ``already_exists``, is the same bundle: its URL is kept);
- ``POST /repos/{repo}/issues`` (title, body, labels) opens the ticket; later evidence for
  the same incident is ``POST /repos/{repo}/issues/{number}/comments``.

The token travels only in the ``Authorization`` header of these requests.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import httpx

from sinks.tickets.ticket import Ticket, TicketError, TicketNote

RELEASE_TAG = "evidence"
API_VERSION = "2022-11-28"
TIMEOUT_S = 30.0


@dataclass(frozen=True)
class GitHubIssues:
    repository: str  # owner/name
    token: str
    api_url: str = "https://api.github.com"
    name: str = "github"

    def _client(self) -> httpx.Client:
        headers = {
            "Authorization": f"Bearer {self.token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
        }
        return httpx.Client(base_url=self.api_url.rstrip("/"), headers=headers, timeout=TIMEOUT_S)

    def open(self, note: TicketNote) -> Ticket:
        with self._client() as client:
            asset = self._upload(client, note)
            body = f"{note.body}\n\nEvidence bundle: {asset} (sha256 `{note.bundle_sha256}`)"
            issue = _json(
                client.post(
                    f"/repos/{self.repository}/issues",
                    json={"title": note.title, "body": body, "labels": ["incident", "evidence"]},
                ),
                "create the issue",
            )
            return Ticket(self.name, str(issue["number"]), str(issue["html_url"]), asset)

    def comment(self, ticket: Ticket, note: TicketNote) -> str:
        with self._client() as client:
            asset = self._upload(client, note)
            body = f"{note.body}\n\nEvidence bundle: {asset} (sha256 `{note.bundle_sha256}`)"
            _json(
                client.post(f"/repos/{self.repository}/issues/{ticket.key}/comments", json={"body": body}),
                "comment on the issue",
            )
            return asset

    def _release(self, client: httpx.Client) -> dict[str, Any]:
        found = client.get(f"/repos/{self.repository}/releases/tags/{RELEASE_TAG}")
        if found.status_code == 200:
            release: dict[str, Any] = found.json()
            return release
        if found.status_code != 404:
            _json(found, "find the evidence release")
        made = client.post(
            f"/repos/{self.repository}/releases",
            json={
                "tag_name": RELEASE_TAG,
                "name": "Evidence bundles",
                "body": "Evidence bundles of incidents, one asset each (Symphony).",
                "prerelease": True,
            },
        )
        return _json(made, "create the evidence release")

    def _upload(self, client: httpx.Client, note: TicketNote) -> str:
        release = self._release(client)
        upload_url = str(release["upload_url"]).split("{", 1)[0]
        response = client.post(
            upload_url,
            params={"name": note.bundle_name},
            content=note.bundle,
            headers={"Content-Type": "application/zip"},
        )
        if response.status_code == 422 and "already_exists" in response.text:
            return (
                f"{str(release['html_url']).rsplit('/tag/', 1)[0]}/download/{RELEASE_TAG}/{note.bundle_name}"
            )
        return str(_json(response, "upload the bundle")["browser_download_url"])


def _json(response: httpx.Response, what: str) -> dict[str, Any]:
    if response.status_code >= 300:
        message = ""
        with contextlib.suppress(ValueError):  # a body that is no JSON: the status says enough
            message = str(response.json().get("message", ""))
        raise TicketError(f"GitHub refused to {what}: HTTP {response.status_code} {message}".rstrip())
    data: dict[str, Any] = response.json()
    return data
