"""The provider adapter contract.

The proxy's canonical form is OpenAI's chat-completions wire format: requests are
OpenAI request bodies (``dict``), answers are OpenAI ``chat.completion`` bodies and
streams are OpenAI ``chat.completion.chunk`` server-sent events, as bytes. An
adapter maps the canonical form to one provider's wire format and back, so the
OpenAI-compatible providers (OpenAI, Perplexity, Venice, Grok, DeepSeek) pass
bytes through almost untouched, and only Anthropic and Gemini translate.

An adapter does no I/O: the gateway sends what ``request()`` builds over its one
pooled client and feeds the answer back through ``response()`` or ``stream()``.
``request()`` applies the rules every wire format shares (the catalog's capabilities,
the parameters the adapter declares it refuses or does not know) and then calls the
adapter's own ``_provider_request()``.
The simulator is each adapter's in-memory twin: it speaks the provider's real
wire format, so an adapter tested against it is tested against that format.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from proxy.adapters.features import (
    CAPABILITIES,
    IGNORED_PARAMS,
    check_capabilities,
    refuse_set,
    refuse_unknown,
)
from proxy.adapters.features import UnsupportedFeature as UnsupportedFeature
from symphony.catalog import Auth
from symphony.events import AttemptStatus


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    url: str
    headers: dict[str, str] = field(repr=False)  # they carry the provider key
    body: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Answer:
    """A whole (non-streamed) answer in canonical form."""

    body: bytes  # an OpenAI chat.completion JSON body
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True, slots=True)
class UpstreamFailure:
    """A provider's error answer, mapped: the status class, when to retry, and a canonical error body."""

    status: AttemptStatus
    http_status: int
    retry_after_s: float | None
    body: bytes  # OpenAI-shaped {"error": {...}}
    rate_limit: dict[str, str] = field(default_factory=dict)
    # A 429 about one of the model's own limits (used up until the retry-after): cool that model,
    # not the provider. From the rate-limit headers, or the quota a Gemini error names.
    model_limit_used_up: bool = False


class StreamTranslator(ABC):
    """Provider stream bytes in, OpenAI chunk SSE bytes out, noting usage as it passes."""

    input_tokens: int = 0
    output_tokens: int = 0

    @abstractmethod
    def feed(self, data: bytes) -> bytes:
        """Canonical SSE bytes completed by ``data`` (may be empty)."""

    @abstractmethod
    def flush(self) -> bytes:
        """Whatever remains at the end of the stream, ending with ``data: [DONE]``."""


class Adapter(ABC):
    """One provider's wire format. ``base_url`` is the real endpoint or the simulator's twin.

    A subclass declares in the class attributes below what its wire format cannot carry;
    ``request()`` refuses that before the subclass's ``_provider_request()`` builds the body.
    """

    # The canonical parameters the provider request maps. None: the wire format is the canonical
    # one and every parameter passes; else a set parameter outside these, ``refused_params`` and
    # ``ignored_params`` is refused.
    mapped_params: ClassVar[frozenset[str] | None] = None
    # Parameters with no equivalent: refused when set to more than their neutral value (the first in
    # this order is named).
    refused_params: ClassVar[tuple[str, ...]] = ()
    # Parameters with no meaning for the answer's content: left behind when not mapped.
    ignored_params: ClassVar[frozenset[str]] = IGNORED_PARAMS
    # Capabilities no model of this wire format has, whatever the catalog says (multiple_choices: n > 1).
    never_capabilities: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        provider: str,
        base_url: str,
        api_key: str,
        *,
        capabilities: Mapping[str, frozenset[str]] | None = None,
        auth: Auth = "bearer",
    ) -> None:
        """``auth``: how the key travels, where the wire format lets the catalog choose (OpenAI's)."""
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.auth = auth
        # model -> what Symphony can serve on it (the catalog's); None: no catalog, no check.
        self.capabilities = capabilities

    def request(self, body: dict[str, Any], model: str, *, stream: bool) -> UpstreamRequest:
        """The provider request for a canonical body; raises ``UnsupportedFeature``.

        The shared rules, in order: the model's catalog capabilities, the parameters with no
        equivalent, the parameters not known, the capabilities the wire format never has.
        """
        if self.capabilities is not None:
            check_capabilities(self.provider, self.capabilities.get(model, frozenset()), body)
        refuse_set(self.provider, body, self.refused_params)
        if self.mapped_params is not None:
            refuse_unknown(
                self.provider, body, self.mapped_params.union(self.refused_params, self.ignored_params)
            )
        if self.never_capabilities:
            check_capabilities(self.provider, CAPABILITIES - self.never_capabilities, body)
        return self._provider_request(body, model, stream=stream)

    @abstractmethod
    def _provider_request(self, body: dict[str, Any], model: str, *, stream: bool) -> UpstreamRequest:
        """The provider request for a body that passed the shared rules; raises ``UnsupportedFeature``
        for what only this wire format refuses."""

    @abstractmethod
    def response(self, body: bytes) -> Answer:
        """A provider's 2xx answer in canonical form."""

    @abstractmethod
    def stream(self, model: str, *, include_usage: bool) -> StreamTranslator:
        """A translator for one streamed answer; the usage chunk only when ``include_usage``."""

    @abstractmethod
    def failure(self, http_status: int, headers: Mapping[str, str], body: bytes) -> UpstreamFailure:
        """A provider's non-2xx answer, mapped."""

    @abstractmethod
    def rate_limits(self, headers: Mapping[str, str]) -> dict[str, str]:
        """The rate-limit headers this provider sends, as observed."""


def headers_show_limit_used_up(rate_limit: Mapping[str, str]) -> bool:
    """Whether a provider's rate-limit headers show a limit at zero (``x-ratelimit-remaining-requests: 0``,
    ``anthropic-ratelimit-tokens-remaining: 0``): those headers describe the model called."""
    return any("remaining" in name and value.strip() == "0" for name, value in rate_limit.items())
