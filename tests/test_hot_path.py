"""The per-answer shortcuts of the hot path give exactly what the plain way gives.

Each shortcut (bench/ measures what it saves) has a slower, obviously right reference:
mitmproxy's `Headers.get`, an unmemoised match, a full JSON parse. These tests hold the
shortcut to its reference over ordinary and odd inputs.
"""

from __future__ import annotations

import pytest
from mitmproxy import http

from sinch_sms_exporter import classify, routes


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
        assert classify.header(response, name.encode()) == response.headers.get(name), (fields, name)


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
