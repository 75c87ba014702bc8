"""flow → Outcome: what one Sinch SMS API answer was, in label terms. All body-parsing rules.

The rules (docs/architecture.md, "Contracts"; the README's "Metrics" section):
- only answers with status ≥ 400 are parsed, after content-decoding, whatever the
  Content-Type says, and only up to a size limit;
- a JSON object whose `code` is a well-formed string gives that code; a malformed code
  string gives `other`; anything else gives `""` ("this answer carried no code").

Nothing here raises on upstream data and nothing here touches what reaches the client:
the body is only read. Knows nothing of Prometheus.
"""

from __future__ import annotations

import codecs
import hashlib
import json

from mitmproxy import http

from sinch_sms_exporter.classify import decoding, routes
from sinch_sms_exporter.contract import catalog
from sinch_sms_exporter.contract.labels import CODE_RE, NO_CODE, OTHER
from sinch_sms_exporter.contract.outcomes import Outcome


class BodyTap:
    """A response `stream` callable: passes every chunk through untouched, keeps a prefix.

    Used for error answers of unknown length (chunked): the client gets the bytes as they
    come, and the classifier still sees the first `limit` bytes, or learns the body was
    longer than that.
    """

    __slots__ = ("limit", "overflow", "prefix")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.prefix = bytearray()
        self.overflow = False

    def __call__(self, chunk: bytes) -> bytes:
        if not self.overflow and chunk:
            room = self.limit - len(self.prefix)
            if len(chunk) > room:
                self.overflow = True
                self.prefix.clear()
            else:
                self.prefix += chunk
        return chunk


def header(message: http.Message, name: bytes) -> str | None:
    """A header's value as `Headers.get` gives it (repeated fields joined by ", "), from one
    scan of the raw fields: a fraction of `Headers.get`'s cost, and this runs on every answer.
    `name` is lowercase bytes."""
    found = None
    for key, value in message.headers.fields:
        if key.lower() == name:
            found = value if found is None else found + b", " + value
    return None if found is None else found.decode("latin-1")


def content_length(response: http.Response) -> int | None:
    value = header(response, b"content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def stream_for(response: http.Response, limit: int) -> bool | BodyTap:
    """How to carry a response's body, decided when its headers arrive.

    - Success answers are never parsed: small ones are buffered (cheapest for mitmproxy),
      big or open-ended ones (list endpoints) are streamed, never held whole in memory.
    - Error answers of known size within the limit are buffered and parsed; over the limit
      they are streamed and carry no code; of unknown size they go through a BodyTap.
    """
    length = content_length(response)
    if length is not None and length <= limit:
        return False
    if response.status_code < 400 or length is not None:
        return True
    return BodyTap(limit)


def error_body(response: http.Response) -> bytes | None:
    """The raw (still encoded) body of an error answer, or None when it was over the limit."""
    stream = response.stream
    if not stream:
        return response.raw_content or b""
    if isinstance(stream, BodyTap):
        return None if stream.overflow else bytes(stream.prefix)
    return None


#: code_of_json's memory of the bodies it parsed: in an incident Sinch answers with the same
#: bytes over and over (`{"code":"blocked_account",…}`), and a lookup costs a fifth of a parse.
#: Keyed by a 128-bit BLAKE2 digest, so no body (a `text` may quote a phone number) is kept;
#: it stops growing at _MEMO_SIZE entries (16 bytes + a short string each).
_memo: dict[bytes, str] = {}
_MEMO_SIZE = 1024


def code_of_json(body: bytes) -> str:
    """The `code` of a JSON error body by the contract's rules; never raises."""
    wide = b"\x00" in body
    if b'"code"' not in body and b"\\" not in body and not wide:
        # No way to spell a "code" key: not as is, not escaped (\u0063ode), not in UTF-16/32
        # (NUL bytes). Such a body gives no code whatever it is: no need to parse it.
        return NO_CODE
    key = hashlib.blake2b(body, digest_size=16).digest()
    code = _memo.get(key)
    if code is None:
        code = _parsed_code(body, wide)
        if len(_memo) < _MEMO_SIZE:
            _memo[key] = code
    return code


def _parsed_code(body: bytes, wide: bool) -> str:
    if not wide and not body.startswith(codecs.BOM_UTF8):
        # What json.loads(bytes) would detect for a body without NUL bytes is UTF-8: decoding
        # it here, as json does (surrogatepass), skips the detection, a third of the parse.
        try:
            text: str | bytes = body.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            return NO_CODE
    else:
        text = body  # UTF-16/32 or a BOM: json.loads detects which
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):  # not JSON, not UTF-8/16/32, nested too deep
        return NO_CODE
    if not isinstance(document, dict):
        return NO_CODE
    code = document.get("code")
    if not isinstance(code, str):
        return NO_CODE
    return code if code in catalog.CODES or CODE_RE.fullmatch(code) else OTHER


def code_of(raw: bytes | None, content_encoding: str, limit: int) -> str:
    """The `code` of an error answer's raw body (None: it was over the size limit)."""
    if not raw:
        return NO_CODE
    try:
        body = decoding.decode(raw, content_encoding, limit)
    except (decoding.TooLarge, decoding.Undecodable):
        return NO_CODE
    return code_of_json(body)


def classify(flow: http.HTTPFlow, region: str, limit: int) -> Outcome:
    """Reduce a completed flow (it has a response) to its Outcome."""
    request = flow.request
    response = flow.response
    assert response is not None
    status = response.status_code
    if status >= 400:
        code = code_of(error_body(response), header(response, b"content-encoding") or "", limit)
    else:
        code = NO_CODE
    return Outcome(
        region,
        routes.endpoint_of(request.path),
        routes.method_label(request.method),
        status,
        code,
        max(0.0, (response.timestamp_end or 0.0) - request.timestamp_start),
    )
