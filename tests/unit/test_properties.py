"""Bad input, property-based (hypothesis): arbitrary bodies, encodings, headers, statuses,
methods, paths and error messages through the classifier, the addon's hooks and the metrics.

Whatever arrives, nothing raises, every label comes from its bounded set, and the flow
leaves the addon exactly as it came in. Runs are derandomized: CI sees the same examples.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import zlib

import brotli
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mitmproxy.flow import Error
from mitmproxy.test import taddons

from sinch_sms_exporter.classify import responses
from sinch_sms_exporter.classify.responses import BodyTap
from sinch_sms_exporter.classify.upstream_errors import upstream_error_reason
from sinch_sms_exporter.contract import catalog, labels
from sinch_sms_exporter.contract.labels import NO_CODE, OTHER, REGION_CAP, UPSTREAM_ERROR_REASONS
from sinch_sms_exporter.contract.outcomes import Outcome
from sinch_sms_exporter.metrics import DEFAULT_CODE_CAP, Metrics
from sinch_sms_exporter.mitm.addon import SinchSmsExporter
from tests.helpers.flows import sinch_flow

# The contract's regular expression, written out here rather than imported: the test checks
# the classifier against the contract, not against itself.
WELL_FORMED = re.compile(r"[a-z][a-z0-9_]{0,63}")
LIMIT = 4096  # small, so that "over the limit" is easy to reach

# SINCH_HYPOTHESIS_EXAMPLES=5000 hunts harder, with fresh random examples each run.
_HUNT = int(os.environ.get("SINCH_HYPOTHESIS_EXAMPLES", "0"))
PROPERTY = settings(
    max_examples=_HUNT or 150,
    deadline=None,
    derandomize=not _HUNT,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def bounded(code: str) -> bool:
    """The code label's bounded set: catalog codes, "", "other", or a well-formed code."""
    return code in catalog.CODES or code in (NO_CODE, OTHER) or WELL_FORMED.fullmatch(code) is not None


def expected_code(document: object) -> str:
    """The contract's rule for a decoded JSON document."""
    if not isinstance(document, dict) or not isinstance(document.get("code"), str):
        return NO_CODE
    return document["code"] if WELL_FORMED.fullmatch(document["code"]) else OTHER


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


ENCODERS = {
    "gzip": gzip.compress,
    "x-gzip": gzip.compress,
    "deflate": zlib.compress,
    "br": brotli.compress,
    "zstd": lambda data: zstandard.ZstdCompressor().compress(data),
}

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
codes = st.one_of(
    st.sampled_from(sorted(catalog.CODES)),
    st.from_regex(WELL_FORMED, fullmatch=True),
    st.text(max_size=80),  # mostly malformed: capitals, spaces, unicode, too long, empty
    st.from_regex(r"[a-z][a-z0-9_]{64,80}", fullmatch=True),  # one too many characters and more
)
error_documents = st.one_of(
    json_values,
    st.builds(
        lambda doc, code: {**doc, "code": code}, st.dictionaries(st.text(max_size=8), json_values, max_size=3), codes
    ),
    st.builds(lambda code: {"code": code}, json_values),  # code that is not a string
)
encoding_headers = st.one_of(
    st.sampled_from(["", "identity", "gzip", "x-gzip", "deflate", "br", "zstd", "GZIP", "gzip, br", "compress"]),
    st.text(max_size=30),
)


# --- code_of: arbitrary bytes, arbitrary Content-Encoding ---------------------------------


@PROPERTY
@given(raw=st.binary(max_size=2 * LIMIT), encoding=encoding_headers, limit=st.integers(1, 2 * LIMIT))
def test_arbitrary_bytes_never_raise_and_give_a_bounded_code(raw: bytes, encoding: str, limit: int) -> None:
    code = responses.code_of(raw, encoding, limit)
    assert bounded(code)
    if len(raw) > limit:
        assert code == NO_CODE


@PROPERTY
@given(document=error_documents, encodings=st.lists(st.sampled_from(sorted(ENCODERS)), max_size=2))
def test_valid_encodings_of_any_json_follow_the_contract(document: object, encodings: list[str]) -> None:
    """Any JSON document in any (stacked) encoding: the code the contract says, or "" when
    the body, encoded or decoded, is over the limit."""
    plain = json.dumps(document).encode()
    raw = plain
    for encoding in encodings:
        raw = ENCODERS[encoding](raw)
    code = responses.code_of(raw, ", ".join(encodings), LIMIT)
    if len(plain) > LIMIT or len(raw) > LIMIT:
        assert code == NO_CODE
    else:
        assert code == expected_code(document)
    assert bounded(code)


@PROPERTY
@given(
    document=error_documents,
    encoding=st.sampled_from(["gzip", "deflate", "br", "zstd"]),
    cut=st.integers(min_value=1),
    raw_deflate=st.booleans(),
)
def test_truncated_encodings_carry_no_code(document: object, encoding: str, cut: int, raw_deflate: bool) -> None:
    plain = json.dumps(document).encode()
    raw = _raw_deflate(plain) if encoding == "deflate" and raw_deflate else ENCODERS[encoding](plain)
    truncated = raw[: len(raw) - 1 - cut % len(raw)]
    code = responses.code_of(truncated, encoding, LIMIT)
    assert code == NO_CODE


@PROPERTY
@given(
    encoding=st.sampled_from(sorted(ENCODERS)),
    size=st.integers(LIMIT + 1, 64 * LIMIT),
    byte=st.binary(min_size=1, max_size=1),
)
def test_bombs_stop_at_the_limit(encoding: str, size: int, byte: bytes) -> None:
    """A body that inflates past the limit carries no code, however valid its start."""
    plain = b'{"code": "blocked_account", "text": "' + byte.hex().encode() * (size // 2) + b'"}'
    raw = ENCODERS[encoding](plain)
    assert len(raw) <= LIMIT  # the bomb itself fits the limit: decoding is what must stop
    assert responses.code_of(raw, encoding, LIMIT) == NO_CODE


# --- classify over whole flows: arbitrary status, headers, method, path ------------------

header_names = st.from_regex(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,20}", fullmatch=True)
header_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=40)
headers = st.dictionaries(header_names, header_values, max_size=5).map(lambda h: {k.lower(): v for k, v in h.items()})
statuses = st.integers(100, 999)
methods = st.sampled_from(sorted(labels.KNOWN_METHODS)) | st.from_regex(r"[A-Z]{1,12}", fullmatch=True)
paths = st.one_of(
    st.builds(
        lambda template, ids, tail: (
            "/xms/v1/PLAN/"
            + "/".join(ids.pop() if s.startswith("{") and ids else s for s in template.split("/"))
            + tail
        ),
        st.sampled_from(labels.ENDPOINT_TEMPLATES),
        st.lists(st.text(st.characters(exclude_characters="/?#", exclude_categories=("Cs",)), min_size=1), max_size=3),
        st.sampled_from(["", "/", "?page=1", "//", "/extra"]),
    ),
    st.text(max_size=60).map(lambda p: "/" + p),
)
bodies = st.one_of(
    st.binary(max_size=2 * LIMIT),
    error_documents.map(lambda d: json.dumps(d).encode()),
    st.builds(lambda d, e: ENCODERS[e](json.dumps(d).encode()), error_documents, st.sampled_from(sorted(ENCODERS))),
)


def _flow(status: int, body: bytes, response_headers: dict[str, str], method: str, path: str):
    flow = sinch_flow(status, body, response_headers, method=method, path=path)
    return flow


@PROPERTY
@given(status=statuses, body=bodies, response_headers=headers, method=methods, path=paths)
def test_classify_yields_labels_from_bounded_sets(
    status: int, body: bytes, response_headers: dict[str, str], method: str, path: str
) -> None:
    flow = _flow(status, body, response_headers, method, path)
    outcome = responses.classify(flow, "us", LIMIT)
    assert isinstance(outcome, Outcome)
    assert outcome.endpoint in labels.ENDPOINT_LABELS
    assert outcome.method in labels.KNOWN_METHODS | {OTHER}
    assert outcome.status == status
    assert bounded(outcome.code)
    if status < 400:
        assert outcome.code == NO_CODE
    assert outcome.duration >= 0


@PROPERTY
@given(
    content_length=st.one_of(st.none(), st.integers(0, 10 * LIMIT).map(str), st.text(max_size=10)),
    status=statuses,
    limit=st.integers(1, 2 * LIMIT),
)
def test_stream_for_any_headers(content_length: str | None, status: int, limit: int) -> None:
    flow = sinch_flow(status, b"", {} if content_length is None else {"content-length": content_length})
    if content_length is None:
        del flow.response.headers["content-length"]
    stream = responses.stream_for(flow.response, limit)
    assert stream is True or stream is False or isinstance(stream, BodyTap)
    if status < 400:
        assert not isinstance(stream, BodyTap)  # success bodies are never parsed


@PROPERTY
@given(chunks=st.lists(st.binary(max_size=3000), max_size=12), limit=st.integers(1, 8000))
def test_body_tap_passes_every_chunk_unchanged(chunks: list[bytes], limit: int) -> None:
    tap = BodyTap(limit)
    for chunk in chunks:
        out = tap(chunk)
        assert out is chunk
    whole = b"".join(chunks)
    if len(whole) <= limit:
        assert not tap.overflow and bytes(tap.prefix) == whole
    else:
        assert tap.overflow and not tap.prefix


# --- the addon's hooks: never raise, never modify, count exactly once ---------------------


def _responses_total(addon: SinchSmsExporter) -> float:
    return sum(s.value for m in addon.metrics.registry.collect() if m.name == "sinch_sms_responses" for s in m.samples)


def _errors_total(addon: SinchSmsExporter) -> float:
    return sum(
        s.value
        for m in addon.metrics.registry.collect()
        if m.name in ("sinch_sms_upstream_errors", "sinch_sms_client_aborts")
        for s in m.samples
        if s.name.endswith("_total")
    )


def _code_labels(addon: SinchSmsExporter) -> set[str]:
    return {
        s.labels["code"] for m in addon.metrics.registry.collect() if m.name == "sinch_sms_responses" for s in m.samples
    }


@PROPERTY
@given(
    status=statuses,
    body=bodies,
    response_headers=headers,
    method=methods,
    path=paths,
    chunking=st.lists(st.integers(1, 5000), min_size=1, max_size=8),
    limit=st.integers(1, 2 * LIMIT),
    drop_length=st.booleans(),
)
def test_hooks_never_raise_never_modify_and_count_once(
    status: int,
    body: bytes,
    response_headers: dict[str, str],
    method: str,
    path: str,
    chunking: list[int],
    limit: int,
    drop_length: bool,
) -> None:
    addon = SinchSmsExporter()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, sinch_metrics_port=0, sinch_body_limit=limit)
        flow = _flow(status, body, response_headers, method, path)
        if drop_length:  # an answer of unknown length (chunked, or closed at the end)
            flow.response.headers.pop("content-length", None)
        response = flow.response
        live = flow.live
        before = (
            flow.request.get_state(),
            response.status_code,
            response.headers.fields,
            response.raw_content,
            response.trailers,
        )

        addon.request(flow)
        addon.responseheaders(flow)
        if isinstance(response.stream, BodyTap):
            # mitmproxy hands the body to the stream callable chunk by chunk; the client gets
            # what it returns: exactly the chunks, in order.
            passed, start = [], 0
            for size in [*chunking, len(body)]:
                chunk = body[start : start + size]
                start += len(chunk)
                out = response.stream(chunk)
                assert out is chunk
                passed.append(out)
            assert b"".join(passed) == body
        addon.response(flow)

        after = (
            flow.request.get_state(),
            response.status_code,
            response.headers.fields,
            response.raw_content,
            response.trailers,
        )
        assert after == before
        assert flow.error is None and not flow.intercepted and flow.live == live
        assert _responses_total(addon) == 1
        assert all(bounded(code) for code in _code_labels(addon))


@PROPERTY
@given(
    message=st.text(max_size=120)
    | st.sampled_from(
        [
            "Certificate verify failed: self-signed certificate",
            "connection closed",
            "[Errno 111] Connect call failed ('127.0.0.1', 9)",
            "[Errno -2] Name or service not known",
            "Client disconnected.",
            "killed",
            "HTTP/1 protocol error: peer closed connection without sending complete message body",
        ]
    ),
    tcp_setup=st.booleans(),
    tls=st.booleans(),
    tls_setup=st.booleans(),
    answered=st.booleans(),
)
def test_any_error_counts_once_under_a_bounded_reason(
    message: str, tcp_setup: bool, tls: bool, tls_setup: bool, answered: bool
) -> None:
    flow = sinch_flow(502, b"")
    if not answered:
        flow.response = None
    flow.server_conn.timestamp_tcp_setup = 1.0 if tcp_setup else None
    flow.server_conn.tls = tls
    flow.server_conn.timestamp_tls_setup = 2.0 if tls_setup else None
    flow.error = Error(message)
    reason = upstream_error_reason(flow)
    assert reason is None or reason in UPSTREAM_ERROR_REASONS

    addon = SinchSmsExporter()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, sinch_metrics_port=0)
        addon.request(flow)
        addon.error(flow)
        assert _errors_total(addon) == 1
        assert _responses_total(addon) == 0


# --- the cardinality guard -----------------------------------------------------------------


def test_five_thousand_novel_codes_stay_under_the_cap() -> None:
    metrics = Metrics()
    novel = [f"novel_code_{i}" for i in range(5000)]
    for code in novel:
        metrics.record_response(Outcome("us", "batches", "POST", 400, code, 0.1))
    for info in catalog.CODES.values():  # catalog codes always pass, even past the cap
        metrics.record_response(Outcome("us", "batches", "POST", info.status, info.code, 0.1))
    registry = metrics.registry
    series = {
        s.labels["code"]: s.value for m in registry.collect() if m.name == "sinch_sms_responses" for s in m.samples
    }
    kept = set(novel[:DEFAULT_CODE_CAP])
    assert set(series) == kept | {OTHER} | set(catalog.CODES)
    assert series[OTHER] == len(novel) - DEFAULT_CODE_CAP
    assert sum(series.values()) == len(novel) + len(catalog.CODES)
    assert registry.get_sample_value("sinch_sms_exporter_label_overflow_total", {"label": "code"}) == 4950
    # The label-children cache is as bounded as the labels.
    assert len(metrics._response_children) <= DEFAULT_CODE_CAP + len(catalog.CODES)


def test_thousands_of_regions_stay_under_the_cap() -> None:
    metrics = Metrics(regions=["lab"])
    for i in range(2000):
        metrics.record_response(Outcome(f"region{i}", "batches", "GET", 200, NO_CODE, 0.1))
        metrics.record_upstream_error(f"region{i}", "batches", "GET", "connect")
    metrics.record_response(Outcome("lab", "batches", "GET", 200, NO_CODE, 0.1))  # configured: always kept
    regions = {
        s.labels["region"] for m in metrics.registry.collect() if m.name == "sinch_sms_responses" for s in m.samples
    }
    assert len(regions) == REGION_CAP + 2  # the first REGION_CAP, "other", "lab"
    assert {"other", "lab"} <= regions
    overflow = metrics.registry.get_sample_value("sinch_sms_exporter_label_overflow_total", {"label": "region"})
    assert overflow == 2 * (2000 - REGION_CAP)
