"""The per-answer shortcuts of the hot path give exactly what the plain way gives.

Each shortcut (bench/ measures what it saves) has a slower, obviously right reference:
mitmproxy's `Headers.get`, an unmemoised match, a full JSON parse. These tests hold the
shortcut to its reference over ordinary and odd inputs.
"""

from __future__ import annotations

import pytest
from mitmproxy import http

from sinch_sms_exporter import classify


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
