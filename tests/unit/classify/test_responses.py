"""classify: the body-parsing rules of the metric contract, over the whole catalog and bad bodies."""

from __future__ import annotations

import gzip
import json

import pytest

from sinch_sms_exporter import settings
from sinch_sms_exporter.classify import decoding, responses
from sinch_sms_exporter.classify.responses import BodyTap
from sinch_sms_exporter.contract import catalog
from sinch_sms_exporter.contract.labels import NO_CODE, OTHER
from tests.helpers.flows import ENCODERS, sinch_flow

LIMIT = settings.DEFAULT_BODY_LIMIT


def error_body(code: str, text: str = "some text") -> bytes:
    return json.dumps({"code": code, "text": text}).encode()


@pytest.mark.parametrize("info", catalog.CODES.values(), ids=lambda i: i.code)
@pytest.mark.parametrize("encoding", ["", "identity", *ENCODERS])
def test_every_catalog_code_in_every_encoding(info: catalog.CodeInfo, encoding: str) -> None:
    body = error_body(info.code, info.text)
    if encoding in ENCODERS:
        body = ENCODERS[encoding](body)
    headers = {"content-type": "application/json"}
    if encoding:
        headers["content-encoding"] = encoding
    outcome = responses.classify(sinch_flow(info.status, body, headers), "us", LIMIT)
    assert outcome.status == info.status
    assert outcome.code == info.code


@pytest.mark.parametrize("info", catalog.STATUSES.values(), ids=lambda i: str(i.status))
def test_every_catalog_status_without_a_code(info: catalog.StatusInfo) -> None:
    # As the API sends them: 404 has no body, the others a plain text or resource body.
    body = b"" if info.body == "none" else b'{"id": "01FC66621XXXXX"}' if info.body == "resource" else b"Forbidden"
    outcome = responses.classify(sinch_flow(info.status, body), "eu", LIMIT)
    assert outcome == (
        "eu",
        "batches",
        "POST",
        info.status,
        NO_CODE,
        pytest.approx(0.123),
    )


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"code": "blocked_account"}', "blocked_account"),
        (b'  {"code":"syntax_invalid_json","text":"x"}\n', "syntax_invalid_json"),
        (b'{"code": "quota_exceeded", "text": "new"}', "quota_exceeded"),  # novel, well-formed: verbatim
        (b'{"code": "a"}', "a"),
        (b'{"code": "' + b"a" * 64 + b'"}', "a" * 64),
        # Malformed code strings: other.
        (b'{"code": "' + b"a" * 65 + b'"}', OTHER),
        (b'{"code": "Blocked_Account"}', OTHER),
        (b'{"code": "blocked-account"}', OTHER),
        (b'{"code": "1abc"}', OTHER),
        (b'{"code": ""}', OTHER),
        (b'{"code": "has space"}', OTHER),
        (b'{"code": "bl\\u00f6cked"}', OTHER),
        (b'{"code": "+15551231234"}', OTHER),
        (b'{"code": "blocked_account\\n"}', OTHER),
        # No code at all: "".
        (b"", NO_CODE),
        (b"{}", NO_CODE),
        (b'{"text": "no code"}', NO_CODE),
        (b'{"code": 403}', NO_CODE),
        (b'{"code": null}', NO_CODE),
        (b'{"code": ["blocked_account"]}', NO_CODE),
        (b'{"code": {"x": 1}}', NO_CODE),
        (b'{"code": true}', NO_CODE),
        (b'[{"code": "blocked_account"}]', NO_CODE),
        (b'"blocked_account"', NO_CODE),
        (b"null", NO_CODE),
        (b"42", NO_CODE),
        (b'{"code": "blocked_account"', NO_CODE),  # truncated
        (b'{"code": "blocked_acc', NO_CODE),  # truncated mid-string
        (b"<html><body>403 Forbidden</body></html>", NO_CODE),
        (b"\xff\xfe\x00garbage\x80\x81", NO_CODE),  # not UTF-8
        (b'{"code": "blocked_account", "text": "\xff\xfe"}', NO_CODE),  # invalid UTF-8 inside
        (b"[" * 100_000 + b"]" * 100_000, NO_CODE),  # deeply nested: over the limit anyway
        (b'{"a":' * 5000 + b"1" + b"}" * 5000, NO_CODE),  # nested deeper than json's recursion limit
        (b'{"code": "x", "n": ' + b"9" * 5000 + b"}", NO_CODE),  # int too long for Python's limit
    ],
)
def test_code_of_bodies(body: bytes, code: str) -> None:
    assert responses.code_of(body, "", LIMIT) == code


def test_utf16_json_is_understood() -> None:
    # json.loads detects UTF-16/32 from the bytes; a code in such a body still counts.
    assert responses.code_of('{"code": "blocked_account"}'.encode("utf-16"), "", LIMIT) == "blocked_account"


def test_duplicate_keys_take_the_last_like_every_json_parser() -> None:
    assert responses.code_of(b'{"code": "a_one", "code": "b_two"}', "", LIMIT) == "b_two"


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", "text/html", "", "application/xml"])
def test_content_type_is_ignored(content_type: str) -> None:
    headers = {"content-type": content_type} if content_type else {}
    flow = sinch_flow(403, error_body("missing_callback_url"), headers)
    assert responses.classify(flow, "us", LIMIT).code == "missing_callback_url"


def test_success_bodies_are_never_parsed() -> None:
    # A 200 whose body looks like an error still carries no code: only status >= 400 is read.
    flow = sinch_flow(200, error_body("blocked_account"))
    assert responses.classify(flow, "us", LIMIT).code == NO_CODE


def test_size_limit_applies_before_and_after_decoding() -> None:
    body = json.dumps({"code": "blocked_account", "text": "x" * 2000}).encode()
    assert responses.code_of(body, "", 4096) == "blocked_account"
    assert responses.code_of(body, "", 1000) == NO_CODE  # raw over the limit
    bomb = gzip.compress(json.dumps({"code": "blocked_account", "pad": " " * 10_000_000}).encode())
    assert len(bomb) < 20_000
    assert responses.code_of(bomb, "gzip", LIMIT) == NO_CODE  # decodes past the limit


@pytest.mark.parametrize("encoding", list(ENCODERS))
def test_decompression_bombs_stop_at_the_limit(encoding: str) -> None:
    bomb = ENCODERS[encoding](b'{"code": "blocked_account", "pad": "' + b" " * 50_000_000 + b'"}')
    with pytest.raises(decoding.TooLarge):
        decoding.decode(bomb, encoding, LIMIT)
    assert responses.code_of(bomb, encoding, LIMIT) == NO_CODE


@pytest.mark.parametrize(
    ("raw", "encoding"),
    [
        (error_body("blocked_account"), "gzip"),  # says gzip, is not
        (gzip.compress(error_body("blocked_account"))[:-12], "gzip"),  # truncated gzip
        (b"\x28\xb5\x2f\xfd garbage", "zstd"),
        (b"not brotli at all", "br"),
        (error_body("blocked_account"), "compress"),  # a coding we do not decode
        (error_body("blocked_account"), "gzip, br"),
    ],
)
def test_undecodable_bodies_carry_no_code(raw: bytes, encoding: str) -> None:
    assert responses.code_of(raw, encoding, LIMIT) == NO_CODE


def test_stacked_encodings_are_undone_last_first() -> None:
    raw = ENCODERS["br"](ENCODERS["gzip"](error_body("unknown_group")))
    assert responses.code_of(raw, "gzip, br", LIMIT) == "unknown_group"


def test_identity_encoding_is_accepted_in_any_case() -> None:
    assert responses.code_of(error_body("unknown_group"), "Identity", LIMIT) == "unknown_group"


class TestStreamPolicy:
    """How a body is carried is decided from the headers; bytes are never changed."""

    def _response(self, status: int, headers: dict[str, str]):
        flow = sinch_flow(status, b"")
        flow.response.headers.clear()
        for k, v in headers.items():
            flow.response.headers[k] = v
        return flow.response

    def test_small_known_bodies_are_buffered(self) -> None:
        assert responses.stream_for(self._response(200, {"content-length": "300"}), LIMIT) is False
        assert responses.stream_for(self._response(403, {"content-length": "70"}), LIMIT) is False

    def test_big_or_open_success_bodies_are_streamed(self) -> None:
        assert responses.stream_for(self._response(200, {"content-length": str(LIMIT + 1)}), LIMIT) is True
        assert responses.stream_for(self._response(200, {"transfer-encoding": "chunked"}), LIMIT) is True

    def test_big_error_bodies_are_streamed_without_parsing(self) -> None:
        assert responses.stream_for(self._response(403, {"content-length": str(10 * LIMIT)}), LIMIT) is True

    def test_error_bodies_of_unknown_size_go_through_a_tap(self) -> None:
        tap = responses.stream_for(self._response(403, {"transfer-encoding": "chunked"}), LIMIT)
        assert isinstance(tap, BodyTap)

    def test_bad_content_length_is_treated_as_unknown(self) -> None:
        assert isinstance(responses.stream_for(self._response(500, {"content-length": "abc"}), LIMIT), BodyTap)


def test_body_tap_passes_chunks_through_and_keeps_a_prefix() -> None:
    tap = BodyTap(10)
    assert tap(b"abcd") == b"abcd"
    assert tap(b"efgh") == b"efgh"
    assert bytes(tap.prefix) == b"abcdefgh" and not tap.overflow
    assert tap(b"ijk") == b"ijk"  # 11 bytes: over the limit
    assert tap.overflow and tap.prefix == b""
    assert tap(b"more") == b"more"
    assert tap(b"") == b""


def test_tapped_error_bodies_are_classified() -> None:
    flow = sinch_flow(403, b"", {"transfer-encoding": "chunked"})
    tap = BodyTap(LIMIT)
    flow.response.stream = tap
    for chunk in (b'{"code": "illegal', b'_number_type", "text": "x"}'):
        tap(chunk)
    assert responses.classify(flow, "us", LIMIT).code == "illegal_number_type"
    tap(b" " * LIMIT)
    assert responses.classify(flow, "us", LIMIT).code == NO_CODE


def test_streamed_big_error_bodies_carry_no_code() -> None:
    flow = sinch_flow(403, b"", {"content-length": str(10 * LIMIT)})
    flow.response.stream = True
    assert responses.classify(flow, "us", LIMIT).code == NO_CODE


def test_outcome_labels_never_carry_the_path_or_method_verbatim() -> None:
    flow = sinch_flow(
        404,
        b"",
        path="/xms/v1/PLAN123/batches/01FC/delivery_report/+15551231234?token=secret",
        method="PROPFIND",
    )
    outcome = responses.classify(flow, "us", LIMIT)
    assert outcome.endpoint == "batches/{batch_id}/delivery_report/{recipient}"
    assert outcome.method == "other"
