"""Callback classification and counting, in process: every type, status and code of the
contract; bad bodies (hypothesis): never raises, labels bounded, the body never changed;
the addon keeps callback flows apart from API flows."""

from __future__ import annotations

import gzip
import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mitmproxy.flow import Error
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import taddons, tflow

from sinch_sms_exporter import settings as sidecar_settings
from sinch_sms_exporter.classify import callbacks
from sinch_sms_exporter.contract import delivery, labels
from sinch_sms_exporter.contract.outcomes import CallbackOutcome
from sinch_sms_exporter.metrics import Metrics
from sinch_sms_exporter.mitm.addon import SinchSmsExporter
from tests.helpers.flows import ENCODERS, sinch_flow

LIMIT = 4096
# The contract's values, written out: the tests check the code against the README's "Callbacks".
TYPES = (
    "delivery_report_sms", "delivery_report_mms", "recipient_delivery_report_sms",
    "recipient_delivery_report_mms", "mo_text", "mo_binary", "mo_media",
)  # fmt: skip
STATUSES = (
    "Queued", "Dispatched", "Aborted", "Cancelled", "Rejected", "Deleted", "Delivered", "Failed", "Expired", "Unknown",
)  # fmt: skip
CODES = (0, *range(400, 409), *range(410, 419))
RECEIVER = "http://127.0.0.1:9000"
CALLBACK_MODE = f"reverse:{RECEIVER}@8090"

_HUNT = int(os.environ.get("SINCH_HYPOTHESIS_EXAMPLES", "0"))
PROPERTY = settings(
    max_examples=_HUNT or 200,
    deadline=None,
    derandomize=not _HUNT,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def classify(document: object, encoding: str = "") -> CallbackOutcome:
    raw = json.dumps(document).encode()
    if encoding:
        raw = ENCODERS[encoding](raw)
    return callbacks.classify_body(raw, encoding, LIMIT)


def recipient(kind: str = "recipient_delivery_report_sms", status: object = "Delivered", code: object = 0) -> dict:
    return {"type": kind, "batch_id": "01BATCH", "recipient": "15550001111", "status": status, "code": code,
            "at": "2026-12-02T06:00:00.000Z", "client_reference": "ref"}  # fmt: skip


# --- the vocabularies match the contract --------------------------------------------------


def test_vocabularies_are_the_contracts() -> None:
    assert labels.CALLBACK_TYPES == TYPES
    assert tuple(s.lower() for s in STATUSES) == labels.DELIVERY_STATUSES
    assert set(labels.FINAL_DELIVERY_STATUSES) == {s.lower() for s in STATUSES} - {"queued", "dispatched"}
    assert tuple(str(c) for c in CODES) == labels.KNOWN_DELIVERY_CODES
    assert labels.DEFAULT_DELIVERY_CODE_CAP == 50


def test_the_catalog_explains_every_status_and_code() -> None:
    assert tuple(delivery.STATUS_INFO) == labels.DELIVERY_STATUSES
    assert tuple(delivery.CODE_INFO) == labels.KNOWN_DELIVERY_CODES
    for info in delivery.STATUS_INFO.values():
        assert info.final == (info.status in labels.FINAL_DELIVERY_STATUSES)
        assert info.meaning and info.advice
    assert {c.code for c in delivery.CODE_INFO.values() if c.mms_only} == {"414", "415", "416", "417", "418"}
    for code in delivery.CODE_INFO.values():
        assert code.status in labels.DELIVERY_STATUSES and code.meaning and code.advice


# --- tables over every type, status and code ----------------------------------------------


@pytest.mark.parametrize("kind", TYPES[2:4])
@pytest.mark.parametrize("status", STATUSES)
def test_recipient_report_every_status(kind: str, status: str) -> None:
    assert classify(recipient(kind, status, 0)) == CallbackOutcome(kind, ((status.lower(), "0", 1),))


@pytest.mark.parametrize("status", ["DELIVERED", "delivered", "dElIvErEd"])
def test_status_is_matched_case_insensitively(status: str) -> None:
    assert classify(recipient(status=status)).reports == (("delivered", "0", 1),)


@pytest.mark.parametrize("code", CODES)
def test_recipient_report_every_code(code: int) -> None:
    assert classify(recipient(status="Aborted", code=code)).reports == (("aborted", str(code), 1),)


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        ("Delivered", 15, ("delivered", "15", 1)),  # an SMPP code: kept (the metrics cap it)
        ("Delivered", 2**31, ("delivered", "other", 1)),  # no code is that big
        ("Delivered", -1, ("delivered", "other", 1)),
        ("Delivered", "0", ("delivered", "", 1)),  # a string is not an integer
        ("Delivered", 0.0, ("delivered", "", 1)),
        ("Delivered", True, ("delivered", "", 1)),
        ("Delivered", None, ("delivered", "", 1)),
        ("Sent", 0, ("other", "0", 1)),  # a status Sinch may add
        (5, 0, ("other", "0", 1)),
        (None, None, ("other", "", 1)),
    ],
)
def test_odd_statuses_and_codes(status: object, code: object, expected: tuple) -> None:
    assert classify(recipient(status=status, code=code)).reports == (expected,)


def test_a_recipient_report_without_status_or_code_is_one_message() -> None:
    assert classify({"type": "recipient_delivery_report_mms"}).reports == (("other", "", 1),)


@pytest.mark.parametrize("kind", TYPES[:2])
def test_batch_report_adds_each_entry_count(kind: str) -> None:
    document = {
        "type": kind, "batch_id": "01BATCH", "total_message_count": 9,
        "statuses": [
            {"code": 0, "status": "Delivered", "count": 5, "recipients": ["15550001111"]},
            {"code": 402, "status": "Aborted", "count": 3},
            {"code": 0, "status": "DELIVERED", "count": 1},  # same label as the first: added
            {"code": 0, "status": "Failed", "count": 0},
        ],
    }  # fmt: skip
    reports = (("delivered", "0", 6), ("aborted", "402", 3))  # a count of 0 is no message
    assert classify(document) == CallbackOutcome(kind, reports)


@pytest.mark.parametrize(
    "statuses",
    [None, {}, "x", [], [1, "a", None], [{"status": "Delivered", "code": 0}], [{"count": -1, "status": "Failed"}],
     [{"count": True, "status": "Failed"}], [{"count": 2.0, "status": "Failed"}], [{"count": 0, "status": "Failed"}],
     [{"count": 10**400, "status": "Failed"}], [{"count": 2**31, "status": "Failed"}]],
)  # fmt: skip
def test_batch_report_entries_without_a_count_count_nothing(statuses: object) -> None:
    assert classify({"type": "delivery_report_sms", "statuses": statuses}) == CallbackOutcome("delivery_report_sms")


@pytest.mark.parametrize("kind", TYPES[4:])
def test_inbound_messages_carry_no_reports(kind: str) -> None:
    body = {"type": kind, "id": "01INBOUND", "from": "15550001111", "to": "12345", "body": "hi", "status": "Delivered"}
    assert classify(body) == CallbackOutcome(kind)


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (b"", ""), (b"not json", ""), (b"[]", ""), (b"{}", ""), (b'{"type": 1}', ""), (b'{"type": null}', ""),
        (b'{"type": "mo_unknown"}', "other"), (b'{"type": "Delivery Report!"}', "other"),
        (b'{"type": "DELIVERY_REPORT_SMS"}', "other"), (b'{"\\u0074ype": "mo_text"}', "mo_text"),
        ('{"type": "mo_text"}'.encode("utf-16"), "mo_text"), (b"\xef\xbb\xbf" + b'{"type": "mo_text"}', "mo_text"),
        (b'{"type": "mo_text"' + b"\xff}", ""), (b"[" * 100_000, ""),
    ],
)  # fmt: skip
def test_type_label(raw: bytes, kind: str) -> None:
    assert callbacks.classify_body(raw, "", 10**6).type == kind


@pytest.mark.parametrize("encoding", sorted(ENCODERS))
def test_content_decoding(encoding: str) -> None:
    outcome = classify(recipient(status="Failed", code=404), encoding)
    assert outcome.reports == (("failed", "404", 1),)


def test_over_the_limit_or_undecodable_gives_nothing() -> None:
    big = json.dumps({**recipient(), "pad": "x" * LIMIT}).encode()
    assert callbacks.classify_body(big, "", LIMIT) == callbacks.NOTHING
    bomb = gzip.compress(json.dumps({**recipient(), "pad": " " * 10 * LIMIT}).encode())
    assert len(bomb) < LIMIT and callbacks.classify_body(bomb, "gzip", LIMIT) == callbacks.NOTHING
    assert callbacks.classify_body(b"\x1f\x8b broken", "gzip", LIMIT) == callbacks.NOTHING
    assert callbacks.classify_body(None, "", LIMIT) == callbacks.NOTHING


# --- bad bodies: never raises, bounded labels, body untouched -----------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
entries = st.fixed_dictionaries(
    {},
    optional={
        "status": st.sampled_from(STATUSES) | json_scalars,
        "code": st.sampled_from(CODES) | json_scalars,
        "count": st.integers(-3, 10**12) | json_scalars,
        "recipients": json_values,
    },
)
documents = st.fixed_dictionaries(
    {"type": st.sampled_from(TYPES) | json_scalars},
    optional={
        "status": st.sampled_from(STATUSES) | json_scalars,
        "code": st.sampled_from(CODES) | json_scalars,
        "statuses": st.lists(entries | json_values, max_size=5) | json_values,
        "batch_id": json_scalars,
    },
)


def assert_bounded(outcome: CallbackOutcome) -> None:
    assert outcome.type in labels.CALLBACK_TYPE_LABELS
    for status, code, count in outcome.reports:
        assert status in labels.DELIVERY_STATUS_LABELS
        assert code in ("", "other") or (code.isdigit() and int(code) < 2**31 and str(int(code)) == code)
        assert isinstance(count, int) and count >= 0
    if outcome.reports:
        assert outcome.type in TYPES[:4]


@PROPERTY
@given(documents | json_values, st.sampled_from(["", *ENCODERS]))
def test_any_json_document_is_bounded(document: object, encoding: str) -> None:
    assert_bounded(classify(document, encoding))


@PROPERTY
@given(st.binary(max_size=600), st.sampled_from(["", "gzip", "br", "zstd", "deflate", "bogus", "gzip, br"]))
def test_any_bytes_never_raise(raw: bytes, encoding: str) -> None:
    assert_bounded(callbacks.classify_body(raw, encoding, LIMIT))


@PROPERTY
@given(documents, st.binary(max_size=40))
def test_the_addon_never_changes_a_callback(document: dict, junk: bytes) -> None:
    """Through the addon's hooks, request and answer bytes stay exactly as they came."""
    body = json.dumps(document).encode() + junk
    exporter = SinchSmsExporter()
    with taddons.context(exporter) as tctx:
        tctx.configure(exporter, sinch_metrics_port=0, sinch_callback_upstreams=[f"{RECEIVER}@8090"])
        flow = callback_flow(body, 200, b'{"ok":true}')
        before = (flow.request.raw_content, flow.request.headers.fields, flow.response.raw_content)
        exporter.request(flow)
        exporter.responseheaders(flow)
        exporter.response(flow)
        assert (flow.request.raw_content, flow.request.headers.fields, flow.response.raw_content) == before


# --- the addon: callback flows are not API answers, and the reverse -----------------------


def callback_flow(body: bytes, status: int, answer: bytes = b"", mode: str = CALLBACK_MODE) -> tflow.http.HTTPFlow:
    flow = tflow.tflow(resp=True)
    flow.client_conn.proxy_mode = ProxyMode.parse(mode)
    flow.request.method = "POST"
    flow.request.host, flow.request.port, flow.request.path = "127.0.0.1", 9000, "/sinch/callbacks?key=abc"
    flow.request.headers["content-type"] = "application/json"
    flow.request.headers["x-sinch-webhook-signature"] = "c2lnbmF0dXJl"
    flow.request.raw_content = body
    flow.response.status_code = status
    flow.response.raw_content = answer
    flow.response.headers["content-length"] = str(len(answer))
    return flow


def sample(metrics: Metrics, name: str, **wanted: str) -> float:
    value = 0.0
    for family in metrics.registry.collect():
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in wanted.items()):
                value += s.value
    return value


def test_the_addon_counts_callbacks_apart_from_api_answers() -> None:
    exporter = SinchSmsExporter()
    with taddons.context(exporter) as tctx:
        tctx.configure(exporter, sinch_metrics_port=0, sinch_callback_upstreams=[f"{RECEIVER}@8090"])
        assert CALLBACK_MODE in tctx.options.mode  # the addon added the listener itself
        batch = {"type": "delivery_report_sms", "statuses": [{"code": 0, "status": "Delivered", "count": 7}]}
        for status in (200, 500, 429, 400, 204):
            exporter.response(callback_flow(json.dumps(batch).encode(), status))
        exporter.response(callback_flow(json.dumps(recipient(status="Failed", code=402)).encode(), 200))
        exporter.response(sinch_flow(403, b'{"code":"blocked_account","text":"Blocked"}'))
        m = exporter.metrics
        assert m is not None
        assert sample(m, "sinch_sms_callbacks_total", type="delivery_report_sms") == 5
        for status in ("200", "500", "429", "400", "204"):
            assert sample(m, "sinch_sms_callbacks_total", type="delivery_report_sms", status=status) == 1
        # Only the 2xx answers count their messages: 200 and 204.
        delivered = {"type": "delivery_report_sms", "status": "delivered", "code": "0"}
        assert sample(m, "sinch_sms_delivery_reports_total", **delivered) == 14
        assert sample(m, "sinch_sms_delivery_reports_total", status="failed", code="402") == 1
        assert sample(m, "sinch_sms_responses_total") == 1
        assert sample(m, "sinch_sms_responses_total", code="blocked_account") == 1
        assert sample(m, "sinch_sms_callbacks_total") == 6


def test_a_huge_count_is_no_report_and_the_hook_never_raises() -> None:
    """A `count` too big for a counter (the listener is public: anyone can post one) counts
    no messages; the callback itself is still counted, and the entries beside it are."""
    exporter = SinchSmsExporter()
    with taddons.context(exporter) as tctx:
        tctx.configure(exporter, sinch_metrics_port=0, sinch_callback_upstreams=[f"{RECEIVER}@8090"])
        statuses = [{"code": 0, "status": "Failed", "count": 10**400}, {"code": 0, "status": "Delivered", "count": 3}]
        body = json.dumps({"type": "delivery_report_sms", "statuses": statuses}).encode()
        exporter.response(callback_flow(body, 200))
        m = exporter.metrics
        assert m is not None
        assert sample(m, "sinch_sms_callbacks_total", type="delivery_report_sms", status="200") == 1
        assert sample(m, "sinch_sms_delivery_reports_total", status="delivered") == 3
        assert sample(m, "sinch_sms_delivery_reports_total", status="failed") == 0


def test_a_receiver_that_does_not_answer_is_a_callback_error_not_an_upstream_error() -> None:
    exporter = SinchSmsExporter()
    with taddons.context(exporter) as tctx:
        tctx.configure(exporter, sinch_metrics_port=0, sinch_callback_upstreams=[f"{RECEIVER}@8090"])
        flow = callback_flow(b'{"type":"mo_text"}', 200)
        flow.response = None
        flow.server_conn.timestamp_tcp_setup = None  # never connected
        flow.error = Error("[Errno 111] Connect call failed ('127.0.0.1', 9000)")
        exporter.error(flow)
        m = exporter.metrics
        assert m is not None
        assert sample(m, "sinch_sms_callback_errors_total", reason="connect") == 1
        assert sample(m, "sinch_sms_upstream_errors_total") == 0
        assert sample(m, "sinch_sms_callbacks_total") == 0


def test_delivery_codes_are_capped() -> None:
    metrics = Metrics(delivery_code_cap=2)
    kind = "recipient_delivery_report_sms"
    for code in ("15", "16", "17", "18", "0", "418", ""):
        metrics.record_callback(CallbackOutcome(kind, (("failed", code, 1),)), 200)
    codes = {
        s.labels["code"]
        for f in metrics.registry.collect()
        for s in f.samples
        if s.name == "sinch_sms_delivery_reports_total"
    }
    assert codes == {"15", "16", "other", "0", "418", ""}
    assert sample(metrics, "sinch_sms_delivery_reports_total", code="other") == 2
    assert sample(metrics, "sinch_sms_exporter_label_overflow_total", label="delivery_code") == 2


@pytest.mark.parametrize(
    ("entry", "spec"),
    [
        ("http://127.0.0.1:9000@8090", "reverse:http://127.0.0.1:9000@8090"),
        ("https://receiver.internal/@0.0.0.0:8091", "reverse:https://receiver.internal@0.0.0.0:8091"),
    ],
)
def test_callback_mode(entry: str, spec: str) -> None:
    assert sidecar_settings.parse_callback_entry(entry).mode == spec


@pytest.mark.parametrize(
    "entry",
    ["http://127.0.0.1:9000", "ftp://x@8090", "http://x/path@8090", "http://x@99999", "http://x@abc", "@8090"],
)
def test_bad_callback_entries(entry: str) -> None:
    with pytest.raises(ValueError):
        sidecar_settings.parse_callback_entry(entry)


def test_two_callback_listeners_cannot_share_a_port() -> None:
    with pytest.raises(ValueError, match="share a listen port"):
        sidecar_settings.parse_callback_listeners(["http://a@8090", "http://b@127.0.0.1:8090"])


def test_block_global_is_lifted_on_callback_listeners_only() -> None:
    exporter = SinchSmsExporter()
    with taddons.context(exporter) as tctx:
        tctx.configure(exporter, sinch_metrics_port=0, sinch_callback_upstreams=[f"{RECEIVER}@8090"])
        for mode, lifted in ((CALLBACK_MODE, True), ("reverse:https://us.sms.api.sinch.com@8080", False)):
            client = tflow.tclient_conn()
            client.peername = ("54.76.19.159", 40000)
            client.proxy_mode = ProxyMode.parse(mode)
            client.error = "Connection killed by block_global."
            exporter.client_connected(client)
            assert (client.error is None) == lifted


def test_the_alert_rules_use_the_vocabulary() -> None:
    """SinchSmsDeliveryFailureRate's status regexes are labels' failed and final statuses."""
    from ruamel.yaml import YAML

    from tests.helpers.paths import REPO

    groups = YAML(typ="safe").load((REPO / "prometheus" / "alerts.yml").read_text())["groups"]
    (rule,) = [r for g in groups for r in g["rules"] if r.get("alert") == "SinchSmsDeliveryFailureRate"]
    failed = "|".join(labels.FAILED_DELIVERY_STATUSES)
    final = "|".join(labels.FINAL_DELIVERY_STATUSES)
    assert rule["expr"].count(f'status=~"{failed}"') == 2
    assert rule["expr"].count(f'status=~"{final}"') == 1
    assert set(labels.FAILED_DELIVERY_STATUSES) < set(labels.FINAL_DELIVERY_STATUSES)
