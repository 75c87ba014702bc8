"""Bounded content-decoding of the bodies that are read: API error answers and callbacks
(gzip, deflate, br, zstd).

A body is only worth reading up to a limit; a small compressed body can expand to
gigabytes (a decompression bomb), so every decoder here stops once it has produced more
than `limit` bytes instead of inflating the whole thing first. Pure functions.
"""

from __future__ import annotations

import io
import zlib

import brotli
import zstandard


class TooLarge(Exception):
    """The decoded body is larger than the limit."""


class Undecodable(Exception):
    """The body does not decode with its declared Content-Encoding."""


def _zlib(raw: bytes, limit: int, wbits: int) -> bytes:
    decoder = zlib.decompressobj(wbits)
    out = decoder.decompress(raw, limit + 1)
    if len(out) > limit:
        raise TooLarge
    if not decoder.eof:  # truncated stream
        raise Undecodable
    return out


def _gzip(raw: bytes, limit: int) -> bytes:
    return _zlib(raw, limit, 16 + zlib.MAX_WBITS)


def _deflate(raw: bytes, limit: int) -> bytes:
    # "deflate" is zlib-wrapped by the RFC, but raw deflate is common in the wild.
    try:
        return _zlib(raw, limit, zlib.MAX_WBITS)
    except zlib.error:
        return _zlib(raw, limit, -zlib.MAX_WBITS)


# Feeding brotli small slices bounds how far one call can overshoot the limit (brotli 1.1 has
# no output limit of its own).
_BROTLI_SLICE = 256


def _brotli(raw: bytes, limit: int) -> bytes:
    decoder = brotli.Decompressor()
    out = bytearray()
    for start in range(0, len(raw), _BROTLI_SLICE):
        out += decoder.process(raw[start : start + _BROTLI_SLICE])
        if len(out) > limit:
            raise TooLarge
    if not decoder.is_finished():
        raise Undecodable
    return bytes(out)


def _zstd(raw: bytes, limit: int) -> bytes:
    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw), read_across_frames=True)
    out = bytearray()
    while len(out) <= limit:
        chunk = reader.read(limit + 1 - len(out))
        if not chunk:
            return bytes(out)
        out += chunk
    raise TooLarge


_DECODERS = {
    "gzip": _gzip,
    "x-gzip": _gzip,
    "deflate": _deflate,
    "br": _brotli,
    "zstd": _zstd,
}


def decode(raw: bytes, content_encoding: str, limit: int) -> bytes:
    """Decode `raw` by its Content-Encoding header value, producing at most `limit` bytes.

    Codings listed in the header are undone last-first, as RFC 9110 says. Raises TooLarge
    past the limit and Undecodable for unknown codings or corrupt data.
    """
    if len(raw) > limit:
        raise TooLarge
    if not content_encoding:
        return raw
    codings = [c.strip().lower() for c in content_encoding.split(",")]
    for coding in reversed(codings):
        if coding in ("", "identity", "none"):
            continue
        decoder = _DECODERS.get(coding)
        if decoder is None:
            raise Undecodable
        try:
            raw = decoder(raw, limit)
        except TooLarge:
            raise
        except Exception as exc:  # zlib.error, brotli.error, zstandard.ZstdError, …
            raise Undecodable from exc
    return raw
