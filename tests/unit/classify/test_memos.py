"""The per-answer shortcuts of the hot path give exactly what the plain way gives.

Each shortcut (bench/ measures what it saves) has a slower, obviously right reference:
mitmproxy's `Headers.get`, an unmemoised match, a full JSON parse. These tests hold the
shortcut to its reference over ordinary and odd inputs.
"""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mitmproxy import http

from sinch_sms_exporter.classify import responses, routes
from sinch_sms_exporter.contract import labels


@pytest.mark.parametrize(
    "fields",
    [
        [],
        [(b"Content-Length", b"58")],
        [(b"content-length", b"58"), (b"Content-Type", b"application/json")],
        [(b"CONTENT-ENCODING", b"gzip"), (b"Content-Encoding", b"br")],  # repeated: joined like Headers.get
        [(b"Content-Encoding", b"")],
        [(b"X-Content-Length", b"1"), (b"Content-Length-X", b"2")],  # near misses
    ],
)
def test_header_is_what_headers_get_gives(fields: list[tuple[bytes, bytes]]) -> None:
    response = http.Response.make(200, b"", http.Headers(fields))
    for name in ("content-length", "content-encoding", "content-type"):
        assert responses.header(response, name.encode()) == response.headers.get(name), (fields, name)


PATHS = [
    "/xms/v1/PLAN/batches",
    "/xms/v1/PLAN/batches/",
    "/xms/v1/PLAN/batches?page=2",
    "/xms/v1/PLAN/batches/dry_run",
    "/xms/v1/PLAN/batches/01FC66621XXXXX119Z8PMV1QPQ",
    "/xms/v1/PLAN/batches/01FC/delivery_report/46700000001",
    "/xms/v1/OTHERPLAN/groups",
    "/xms/v1/PLAN/groups/01GRP/members",
    "/xms/v1/PLAN/inbounds",
    "/xms/v1/PLAN/unknown",
    "/xms/v1//batches",
    "/xms/v2/PLAN/batches",
    "/",
    "",
]


def test_endpoint_memo_answers_as_the_match_does_and_keeps_no_ids_or_queries() -> None:
    routes._memo.clear()
    for _ in range(3):  # cold, then from the memo
        for path in PATHS:
            assert routes.endpoint_of(path) == routes._match(path), path
    kept = set(routes._memo)
    assert kept == {
        "/xms/v1/PLAN/batches",
        "/xms/v1/PLAN/batches/",
        "/xms/v1/PLAN/batches/dry_run",
        "/xms/v1/OTHERPLAN/groups",
        "/xms/v1/PLAN/inbounds",
    }  # no batch id, phone number, query, or path that is not a Sinch endpoint


def test_endpoint_memo_stops_growing_at_its_size() -> None:
    routes._memo.clear()
    for i in range(routes._MEMO_SIZE * 3):
        assert routes.endpoint_of(f"/xms/v1/PLAN{i}/batches") == "batches"
    assert len(routes._memo) == routes._MEMO_SIZE


def _code_by_full_parse(body: bytes) -> str:
    """The contract's rule with no shortcut: always parse."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return labels.NO_CODE
    code = document.get("code") if isinstance(document, dict) else None
    if not isinstance(code, str):
        return labels.NO_CODE
    return code if labels.CODE_RE.fullmatch(code) else labels.OTHER


ODD_BODIES = [
    b'{"code":"blocked_account","text":"The account is blocked"}',
    b'{"\\u0063ode":"blocked_account"}',  # an escaped key is still "code"
    b'{"c\\u006fde":"Blocked"}',
    '{"code":"syntax_invalid_json"}'.encode("utf-16"),
    '{"code":"syntax_invalid_json"}'.encode("utf-32-le"),
    '\ufeff{"code":"unknown_group"}'.encode(),  # UTF-8 with a BOM
    b'{"text":"no code here"}',
    b'{"codes":"x","coder":"y"}',
    b"<html>403 Forbidden</html>",
    b'["code"]',
    b'{"code":"blocked_\xff"}',  # not UTF-8
    b'{"code":"\\ud800"}',  # a lone surrogate, escaped: json keeps it
    "\ufeff".encode("utf-16-le") + '{"code":"x"}'.encode("utf-16-le"),
    b"",
]


@pytest.mark.parametrize("body", ODD_BODIES)
def test_code_of_json_skips_only_bodies_that_cannot_carry_a_code(body: bytes) -> None:
    assert responses.code_of_json(body) == _code_by_full_parse(body)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["code", "text", "c", "x"]), inner),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    document=_JSON,
    encoding=st.sampled_from(["utf-8", "utf-16", "utf-16-le", "utf-32", "utf-8-sig"]),
    ascii_only=st.booleans(),
)
def test_code_of_json_equals_a_full_parse(document, encoding: str, ascii_only: bool) -> None:
    body = json.dumps(document, ensure_ascii=ascii_only).encode(encoding, "surrogatepass")
    assert responses.code_of_json(body) == _code_by_full_parse(body)


def test_code_memo_answers_as_a_parse_and_keeps_no_body() -> None:
    responses._memo.clear()
    for _ in range(3):  # cold, then from the memo
        for body in ODD_BODIES:
            assert responses.code_of_json(body) == _code_by_full_parse(body), body
    digests = {hashlib.blake2b(body, digest_size=16).digest() for body in ODD_BODIES}
    assert responses._memo and set(responses._memo) <= digests  # remembered by digest only
    for key, code in responses._memo.items():
        assert len(key) == 16  # a digest, not the body (a `text` may quote a phone number)
        assert code in (
            labels.NO_CODE,
            labels.OTHER,
            "blocked_account",
            "syntax_invalid_json",
            "unknown_group",
            "x",
        )


def test_code_memo_stops_growing_at_its_size() -> None:
    responses._memo.clear()
    for i in range(responses._MEMO_SIZE * 2):
        assert responses.code_of_json(f'{{"code":"novel_{i}"}}'.encode()) == f"novel_{i}"
    assert len(responses._memo) == responses._MEMO_SIZE
    # Past the size, bodies are still parsed, right, every time.
    assert responses.code_of_json(b'{"code":"after_the_cap"}') == "after_the_cap"
