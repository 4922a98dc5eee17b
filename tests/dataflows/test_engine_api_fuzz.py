"""The engine's HTTP API under a fuzzer: whatever the headers, tokens, bodies and paths, never a 5xx.

The real API (uvicorn, Starlette, the token guard) serves a real chDB store with
every route on (the cluster's /insert and the test-only /faults included). Each
answer is JSON, and a 5xx would be a bug: a bad token is a 401 or 403, a bad body
or query a 400, an unknown path a 404, a wrong method a 405.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dataflows.api_auth import Tokens
from dataflows.query_api import QueryApi, create_app
from sinks.clickhouse_schema import migrate
from sinks.clickhouse_store import ClickHouseStore, WriteFaults
from tests.engineutil import ADMIN_TOKEN, ANALYST_TOKEN

PATHS = [
    "/health",
    "/query",
    "/metrics",
    "/insert",
    "/faults",
    "/",
    "/query/",
    "/QUERY",
    "/insert?table=usage",
]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]
TOKENS = [ADMIN_TOKEN, ANALYST_TOKEN, "", "wrong", ADMIN_TOKEN + "x", "ä" + ADMIN_TOKEN]


@pytest.fixture(scope="module")
def api_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("engine-api")
    store = ClickHouseStore.connect(f"chdb://{root / 'chdb'}", log_dir=root / "logs")
    migrate(store)
    store.faults = WriteFaults()
    app = create_app(
        store,
        tokens=Tokens(ADMIN_TOKEN, ANALYST_TOKEN),
        metrics=lambda: "symphony_up 1\n",
        accept_writes=True,
        faults=store.faults,
    )
    api = QueryApi(app, 0)
    api.start()
    try:
        yield f"http://127.0.0.1:{api.port}"
    finally:
        api.stop()
        store.close()


authorization = st.one_of(
    st.sampled_from(TOKENS).map(lambda token: f"Bearer {token}".encode()),
    st.binary(max_size=80),
    st.binary(max_size=60).map(lambda raw: b"Bearer " + raw),
    st.binary(max_size=60).map(lambda raw: b"Basic " + raw),
)
json_values = st.recursive(
    # Integers JSON can carry as 64-bit numbers (orjson refuses larger ones before anything is sent).
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(orjson.dumps),
    st.text(max_size=200).map(lambda sql: orjson.dumps({"sql": sql})),
    st.sampled_from(["SELECT 1", "SELECT count() FROM usage", "select * from nowhere"]).map(
        lambda sql: orjson.dumps({"sql": sql})
    ),
    st.dictionaries(st.sampled_from(["outage_s", "lost_acks"]), json_values, max_size=2).map(orjson.dumps),
)
paths = st.one_of(st.sampled_from(PATHS), st.text(max_size=30).map(lambda text: "/" + quote(text)))
extra_headers = st.dictionaries(
    st.sampled_from(["content-type", "content-length-x", "x-forwarded-for", "accept", "cookie"]),
    st.binary(max_size=40),
    max_size=3,
)


def sendable(value: bytes) -> bytes:
    """A header value HTTP can carry: any byte but controls, no surrounding blanks."""
    return bytes(byte for byte in value if byte >= 0x20 and byte != 0x7F).strip()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=st.sampled_from(METHODS),
    path=paths,
    auth=authorization,
    body=bodies,
    headers=extra_headers,
)
@example(  # found by the fuzzer in CI: Arrow raised OSError ("negative continuation token")
    method="POST",
    path="/insert?table=usage",
    auth=f"Bearer {ADMIN_TOKEN}".encode(),
    body=b"\x00\x00\x00\x80",
    headers={},
)
def test_the_engine_api_never_answers_5xx(
    api_url: str, method: str, path: str, auth: bytes, body: bytes, headers: dict[str, bytes]
) -> None:
    request_headers = {name: sendable(value) for name, value in {"authorization": auth, **headers}.items()}
    with httpx.Client(timeout=30) as client:
        answer = client.request(method, api_url + path, content=body, headers=request_headers)
    assert answer.status_code < 500, (method, path, auth, body, answer.status_code, answer.text[:300])
    if method != "HEAD" and answer.status_code != 200:
        assert "error" in answer.json(), answer.text[:300]
