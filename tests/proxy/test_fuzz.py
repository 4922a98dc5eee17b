"""Fuzzing every inbound endpoint: malformed input gets a 4xx that says why, never a 5xx or a crash.

Bodies are drawn three ways: arbitrary bytes, arbitrary JSON, and valid requests with
one field replaced by arbitrary JSON (the kind of mistake an app makes). Beyond bodies:
any header value a client can send (the x-symphony-* headers, content-type, anything
else), any credentials in either key header, any query string, on every route (GET
/v1/models, /health and /metrics included), and stray paths and methods. Every error is
JSON in the shape of the SDK that calls the path (Anthropic's under /v1/messages,
OpenAI's elsewhere). "Any header value" means what HTTP can carry: bytes below 0x20 (tab
aside) and 0x7F never reach the app: uvicorn's HTTP parser answers them with its own 400
in text/plain, which the app cannot shape. The proxy runs once for the module in front
of the real simulator, with the failed- authentication limit raised so the credential
fuzzing is not cut short by its own 429s.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from symphony.redis_server import RedisServer
from tests.proxy_stack import ProxyStack

MESSAGES = [{"role": "user", "content": "hi"}]
VALID: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {"model": "auto", "messages": MESSAGES, "max_tokens": 4},
    "/v1/messages": {"model": "auto", "max_tokens": 4, "messages": MESSAGES},
    "/v1/route/execute": {
        "task": "chat",
        "messages": MESSAGES,
        "max_tokens": 4,
        "constraints": {"max_cost_usd": 0.01, "allowed_providers": ["openai", "grok"]},
        "overrides": {},
    },
    "/v1/feedback": {"decision_id": "01JABCDEFGHJKMNPQRSTVWXYZ0", "score": 0.5, "source": "fuzz"},
}
ENDPOINTS = list(VALID)
# Fields a mutation may replace, beyond the valid body's own.
MESSAGE_FIELDS = ["role", "content", "tool_calls", "tool_call_id", "name"]
EXTRA_FIELDS = [
    "stream",
    "tools",
    "tool_choice",
    "response_format",
    "stop",
    "n",
    "system",
    "temperature",
    "model",
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


@st.composite
def mutated(draw: st.DrawFn, path: str) -> bytes:
    """A valid body with one field, top-level or in its message, replaced by any JSON."""
    body = dict(VALID[path])
    if "messages" in body and draw(st.booleans()):
        message = {**MESSAGES[0], draw(st.sampled_from(MESSAGE_FIELDS)): draw(json_values)}
        body["messages"] = [message]
    else:
        body[draw(st.sampled_from([*body, *EXTRA_FIELDS]))] = draw(json_values)
    return json.dumps(body).encode()


def bodies(path: str) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=64),
        json_values.map(lambda value: json.dumps(value).encode()),
        mutated(path),
    )


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyStack]:
    server = RedisServer(port=0, data_dir=Path(tmp_path_factory.mktemp("redis")), persist=False)
    server.start()
    try:
        with ProxyStack(server, auth_failures_per_minute=1_000_000) as stack:
            yield stack
    finally:
        server.stop()


def check(client: httpx.Client, path: str, body: bytes) -> None:
    answer = client.post(path, content=body, headers={"content-type": "application/json"})
    assert answer.status_code < 500, (path, body, answer.status_code, answer.text)
    if answer.status_code >= 400:
        error = answer.json()["error"]
        assert isinstance(error["message"], str) and error["message"], (path, body, answer.text)
        if path == "/v1/messages":
            assert answer.json()["type"] == "error"


@pytest.mark.parametrize("path", ENDPOINTS)
def test_malformed_bodies_never_get_a_5xx(proxy: ProxyStack, path: str) -> None:
    with httpx.Client(base_url=proxy.url, timeout=30, headers=proxy.auth) as client:

        @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(body=bodies(path))
        def run(body: bytes) -> None:
            check(client, path, body)

        run()
        # The proxy is still whole: a valid request is served.
        assert client.post(path, json=valid(client, path)).status_code in (200, 202)


def valid(client: httpx.Client, path: str) -> dict[str, Any]:
    """The valid body for ``path``; feedback scores a decision the proxy just made for this app."""
    if path != "/v1/feedback":
        return VALID[path]
    answer = client.post("/v1/chat/completions", json=VALID["/v1/chat/completions"])
    return {**VALID[path], "decision_id": answer.headers["x-symphony-decision-id"]}


# ------------------------------------------------------------- headers, query strings, GET routes

GET_ROUTES = ["/v1/models", "/health", "/metrics"]
ROUTES = [*(("POST", path) for path in ENDPOINTS), *(("GET", path) for path in GET_ROUTES)]
# Requests that reach no handler: unknown paths, wrong methods, near-misses of real paths.
STRAY = [
    ("GET", "/v1/chat/completions"),
    ("GET", "/v1/messages"),
    ("DELETE", "/v1/messages"),
    ("POST", "/v1/models"),
    ("PUT", "/health"),
    ("GET", "/"),
    ("GET", "/v1/"),
    ("GET", "/v1/messages/"),
    ("GET", "/V1/MODELS"),
    ("OPTIONS", "/v1/chat/completions"),
    ("GET", "/v1/%00"),
]
SYMPHONY_HEADERS = [
    "x-symphony-task",
    "x-symphony-app",
    "x-symphony-decision-id",
    "x-symphony-arm",
    "x-symphony-policy",
]
HEADER_NAMES = [
    *SYMPHONY_HEADERS,
    "content-type",
    "accept",
    "anthropic-version",
    "anthropic-beta",
    "openai-organization",
    "x-forwarded-for",
    "cookie",
    "user-agent",
    "accept-encoding",
    "transfer-encoding-x",
]
header_names = st.one_of(
    st.sampled_from(HEADER_NAMES),
    st.from_regex(r"\Ax-symphony-[a-z0-9-]{0,12}\Z"),
    st.from_regex(r"\A[!#$%&'*+.^_`|~0-9A-Za-z-]{1,20}\Z"),
)
content_types = st.one_of(
    st.sampled_from(
        [
            b"application/json",
            b"application/json; charset=utf-8",
            b"application/json; charset=latin-1",
            b"text/plain",
            b"multipart/form-data; boundary=x",
            b"application/x-www-form-urlencoded",
            b"",
            b"*/*",
        ]
    ),
    st.binary(max_size=40),
)


def sendable(value: bytes) -> bytes:
    """A header value HTTP can carry: any byte but controls (tab kept), no surrounding blanks."""
    return bytes(byte for byte in value if byte == 0x09 or (byte >= 0x20 and byte != 0x7F)).strip(b" \t")


header_values = st.one_of(
    st.binary(max_size=60),
    st.text(max_size=30).map(lambda text: text.encode()),
    st.sampled_from([b"chat", b"code", b"", b"\xff\xfe", "é".encode(), b"a" * 300, b"a" * 17_000]),
).map(sendable)
# Every header Symphony reads or writes is drawn often; any other name now and then.
extra_headers = st.builds(
    lambda known, other: {**other, **known},
    st.fixed_dictionaries({}, optional=dict.fromkeys(SYMPHONY_HEADERS, header_values)),
    st.dictionaries(header_names, header_values, max_size=3),
)
query_strings = st.one_of(
    st.just(""),
    st.text(max_size=40).map(lambda text: quote(text, safe="=&;%+/?")),
    st.dictionaries(st.text(max_size=8), st.text(max_size=12), max_size=3).map(
        lambda params: "&".join(f"{quote(k)}={quote(v)}" for k, v in params.items())
    ),
    st.sampled_from(["model=auto", "stream=true", "api-version=2024-02-01", "%", "%zz", "a=%ff", "&&=="]),
)


def keys_for(stack: ProxyStack) -> list[bytes]:
    key = stack.key.encode()
    return [key, b"", b"sk-sym-", key + b"x", key[:-1], b"sk-sym-abc-def", "sk-sym-é-ü".encode(), b"\xff" * 8]


def authorization(stack: ProxyStack) -> st.SearchStrategy[dict[str, bytes]]:
    keys = st.sampled_from(keys_for(stack)) | st.binary(max_size=60)
    return st.one_of(
        st.just({"authorization": b"Bearer " + stack.key.encode()}),
        st.just({"x-api-key": stack.key.encode()}),
        keys.map(lambda key: {"authorization": b"Bearer " + key}),
        keys.map(lambda key: {"x-api-key": key}),
        st.tuples(keys, keys).map(lambda pair: {"authorization": b"Bearer " + pair[0], "x-api-key": pair[1]}),
        st.binary(max_size=80).map(lambda raw: {"authorization": raw}),
        st.tuples(st.sampled_from([b"Basic ", b"bearer ", b"Bearer", b"Token ", b"BEARER  "]), keys).map(
            lambda pair: {"authorization": pair[0] + pair[1]}
        ),
        st.just({}),
    ).map(lambda headers: {name: sendable(value) for name, value in headers.items()})


def check_answer(method: str, path: str, answer: httpx.Response, what: object) -> None:
    """Never a 5xx; every error is JSON in the shape of the SDK that calls ``path``."""
    assert answer.status_code < 500, (method, path, what, answer.status_code, answer.text[:300])
    if answer.status_code < 400 or method == "HEAD":
        return
    assert answer.headers.get("content-type", "").startswith("application/json"), (what, answer.text[:300])
    body = answer.json()
    error = body["error"]
    assert isinstance(error["message"], str) and error["message"], (what, answer.text[:300])
    assert isinstance(error["type"], str) and error["type"], (what, answer.text[:300])
    if path.split("?")[0] == "/v1/messages":
        assert body["type"] == "error", (what, answer.text[:300])  # Anthropic's shape
        assert set(error) == {"type", "message"}, (what, answer.text[:300])
    else:
        assert set(body) == {"error"}, (what, answer.text[:300])  # OpenAI's shape
        assert {"message", "type", "param", "code"} <= set(error), (what, answer.text[:300])


def send(
    client: httpx.Client,
    method: str,
    path: str,
    query: str,
    headers: dict[str, bytes],
    auth: dict[str, bytes],
) -> httpx.Response:
    body = json.dumps(VALID[path]).encode() if method == "POST" and path in VALID else b""
    merged = {"content-type": b"application/json", **headers, **auth}
    url = f"{path}?{query}" if query else path
    raw = {name.encode(): value for name, value in merged.items()}
    return client.request(method, url, content=body, headers=raw)


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)


def test_headers_and_query_strings_on_every_route_never_get_a_5xx(proxy: ProxyStack) -> None:
    """Any header a client can send (x-symphony-*, content-type, ...) and any query string, on every route."""
    with httpx.Client(base_url=proxy.url, timeout=30) as client:

        @FUZZ
        @given(
            route=st.sampled_from(ROUTES),
            query=query_strings,
            headers=extra_headers,
            content_type=content_types.map(sendable),
        )
        def run(route: tuple[str, str], query: str, headers: dict[str, bytes], content_type: bytes) -> None:
            method, path = route
            headers = {"content-type": content_type, **headers}
            auth = {"authorization": f"Bearer {proxy.key}".encode()}
            answer = send(client, method, path, query, headers, auth)
            check_answer(method, path, answer, (query, headers))

        run()
        assert client.get("/v1/models", headers=proxy.auth).status_code == 200


def presents_the_key(auth: dict[str, bytes], key: bytes) -> bool:
    """Whether these headers carry ``key`` and nothing that contradicts it.

    An auth scheme is case-insensitive (RFC 9110, 11.1) and blanks around a token do not
    count; two different keys in the two headers carry none.
    """
    bearer = b""
    if "authorization" in auth:
        scheme, _, token = auth["authorization"].strip().partition(b" ")
        if scheme.lower() != b"bearer" or not token.strip():
            return False
        bearer = token.strip()
    api_key = auth.get("x-api-key", b"").strip()
    if bearer and api_key and bearer != api_key:
        return False
    return (bearer or api_key) == key


def test_any_credentials_on_every_route_never_get_a_5xx(proxy: ProxyStack) -> None:
    """Missing, malformed, foreign or conflicting keys in either header: a 401 (or 429), never a 5xx."""
    with httpx.Client(base_url=proxy.url, timeout=30) as client:

        @FUZZ
        @given(route=st.sampled_from(ROUTES), auth=authorization(proxy))
        def run(route: tuple[str, str], auth: dict[str, bytes]) -> None:
            method, path = route
            answer = send(client, method, path, "", {}, auth)
            check_answer(method, path, answer, auth)
            if path not in ("/health", "/metrics") and not presents_the_key(auth, proxy.key.encode()):
                assert answer.status_code in (401, 429), (auth, answer.status_code, answer.text[:300])

        run()
        assert client.get("/v1/models", headers=proxy.auth).status_code == 200


def test_stray_paths_and_methods_answer_in_the_callers_shape(proxy: ProxyStack) -> None:
    """Unknown paths and wrong methods, with or without a key and with any query: a JSON 4xx."""
    with httpx.Client(base_url=proxy.url, timeout=30) as client:

        @FUZZ
        @given(
            route=st.sampled_from(STRAY)
            | st.tuples(
                st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]),
                st.text(max_size=24).map(lambda text: "/v1/" + quote(text)),
            ),
            query=query_strings,
            authenticated=st.booleans(),
        )
        def run(route: tuple[str, str], query: str, authenticated: bool) -> None:
            method, path = route
            auth = {"authorization": f"Bearer {proxy.key}".encode()} if authenticated else {}
            answer = send(client, method, path, query, {}, auth)
            check_answer(method, path, answer, (query, authenticated))
            if (method, path) not in ROUTES:  # an error, or Starlette's redirect of a trailing slash
                assert answer.status_code >= 300, (method, path, answer.status_code)

        run()
