"""Test flows of Sinch SMS API answers, built with mitmproxy's own tflow."""

from __future__ import annotations

import gzip
import zlib

import brotli
import zstandard
from mitmproxy import http
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import tflow

UPSTREAM = "https://us.sms.api.sinch.com"

ENCODERS = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "br": brotli.compress,
    "zstd": lambda b: zstandard.ZstdCompressor().compress(b),
}


def sinch_flow(
    status: int = 200,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    path: str = "/xms/v1/PLAN123/batches",
    method: str = "POST",
    mode: str = f"reverse:{UPSTREAM}",
    host: str = "us.sms.api.sinch.com",
    port: int = 443,
) -> http.HTTPFlow:
    """A completed flow: the request as a service sends it, the answer as Sinch gives it."""
    flow = tflow.tflow(resp=True)
    flow.client_conn.proxy_mode = ProxyMode.parse(mode)
    flow.request.method = method
    flow.request.scheme = "https"
    flow.request.host = host
    flow.request.port = port
    flow.request.path = path
    flow.request.headers["authorization"] = "Bearer secret-token"
    response = flow.response
    assert response is not None
    response.status_code = status
    response.headers.clear()
    for name, value in (headers or {}).items():
        response.headers[name] = value
    response.raw_content = body
    if "content-length" not in response.headers and "transfer-encoding" not in response.headers:
        response.headers["content-length"] = str(len(body))
    response.timestamp_end = flow.request.timestamp_start + 0.123
    return flow
