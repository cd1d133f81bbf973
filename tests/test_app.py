"""Whatever a caller sends, the answer is never a 500 and never a hang."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from support import assertion, make_client, write_client

TOKEN = "/v1/clients/app/token"
HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=300)


@pytest.fixture(scope="module")
def shared_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    directory: Path = tmp_path_factory.mktemp("clients")
    write_client(directory, rate_limit={"per_identity": "1000000/hour", "per_ip": "1000000/hour"})
    with make_client(directory, country_header="x-country") as c:
        yield c


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=10,
)
bodies = st.one_of(
    st.binary(max_size=600),
    st.dictionaries(
        st.sampled_from(["platform", "apns_environment", "country", "identity", "x"]),
        json_values,
        max_size=4,
    ).map(lambda d: __import__("json").dumps(d).encode()),
)


@pytest.mark.slow
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=bodies,
    content_type=st.sampled_from(
        ["application/json", "text/plain", "", "application/json; charset=utf-8"]
    ),
    authorization=st.one_of(st.none(), HEADER_TEXT, st.just("valid")),
    country=st.one_of(st.none(), HEADER_TEXT),
)
def test_no_body_or_header_gives_a_500(
    shared_client: TestClient,
    body: bytes,
    content_type: str,
    authorization: str | None,
    country: str | None,
) -> None:
    """Random bodies, content types, credentials and country headers never produce a 5xx."""
    headers = {}
    if content_type:
        headers["content-type"] = content_type
    if authorization == "valid":
        headers["authorization"] = f"Bearer {assertion('alice')}"
    elif authorization is not None:
        headers["authorization"] = authorization
    if country is not None:
        headers["x-country"] = country
    r = shared_client.post(TOKEN, content=body, headers=headers)
    assert r.status_code < 500
    if r.status_code != 200:
        assert "application/problem+json" == r.headers["content-type"]


@settings(max_examples=60, deadline=None)
@given(path=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=80))
def test_no_path_gives_a_500(shared_client: TestClient, path: str) -> None:
    """Random paths and client ids never produce a 5xx."""
    r = shared_client.get("/v1/clients/" + path.replace("?", "").replace("#", ""))
    assert r.status_code < 500
