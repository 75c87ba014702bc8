"""The benchmark's reading of hey's output (bench/loadgen.py): a misread line would make the
table wrong without anyone noticing, so it is checked against hey's real output."""

from __future__ import annotations

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from helpers import REPO, system_tool

sys.path.insert(0, str(REPO / "bench"))
import loadgen  # bench/ is a directory of scripts, not a package

# Verbatim output of Debian's hey 0.1.4 (-n 200 -c 4 against nginx answering 403).
HEY_403 = """
Summary:
  Total:\t0.0147 secs
  Slowest:\t0.0029 secs
  Fastest:\t0.0001 secs
  Average:\t0.0003 secs
  Requests/sec:\t13616.2648
  \n  Total data:\t11600 bytes
  Size/request:\t58 bytes

Response time histogram:
  0.000 [1]\t|
  0.000 [154]\t|■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■
  0.003 [1]\t|


Latency distribution:
  10% in 0.0001 secs
  25% in 0.0001 secs
  50% in 0.0002 secs
  75% in 0.0003 secs
  90% in 0.0005 secs
  95% in 0.0006 secs
  99% in 0.0022 secs

Details (average, fastest, slowest):
  DNS+dialup:\t0.0000 secs, 0.0001 secs, 0.0029 secs
  DNS-lookup:\t0.0000 secs, 0.0000 secs, 0.0000 secs
  req write:\t0.0000 secs, 0.0000 secs, 0.0003 secs
  resp wait:\t0.0002 secs, 0.0000 secs, 0.0011 secs
  resp read:\t0.0000 secs, 0.0000 secs, 0.0005 secs

Status code distribution:
  [201]\t150 responses
  [403]\t50 responses
"""

# hey against a closed port: no answers, only an error distribution.
HEY_REFUSED = """
Summary:
  Total:\t0.0021 secs
  Slowest:\t0.0000 secs
  Fastest:\t0.0000 secs
  Average:\t NaN secs
  Requests/sec:\t9723.0392
  \n
Response time histogram:


Latency distribution:

Status code distribution:

Error distribution:
  [20]\tGet "http://127.0.0.1:1/": dial tcp 127.0.0.1:1: connect: connection refused
"""


def test_summary_numbers_are_read_exactly() -> None:
    result = loadgen.parse_summary(HEY_403)
    assert result.rps == pytest.approx(13616.2648)
    assert result.total_seconds == pytest.approx(0.0147)
    assert (result.latency(50), result.latency(95), result.latency(99)) == (0.0002, 0.0006, 0.0022)
    assert result.statuses == {201: 150, 403: 50}
    assert result.requests == 200
    assert result.errors == {}


def test_errors_are_counted_and_never_taken_for_answers() -> None:
    result = loadgen.parse_summary(HEY_REFUSED)
    assert result.requests == 0
    assert result.error_count == 20
    assert "connection refused" in next(iter(result.errors))
    with pytest.raises(loadgen.HeyOutputError):
        result.latency(50)


def test_a_percentile_hey_could_not_compute_is_missing_not_zero() -> None:
    # With few answers hey prints "0% in 0.0000 secs" in place of its 99% line.
    result = loadgen.parse_summary(HEY_403.replace("  99% in 0.0022 secs", "  0% in 0.0000 secs"))
    with pytest.raises(loadgen.HeyOutputError, match="99%"):
        result.latency(99)


@pytest.mark.parametrize("line", ["Requests/sec:", "Total:\t0.0147", "[201]"])
def test_output_without_a_needed_line_is_an_error_not_a_number(line: str) -> None:
    text = HEY_403 if line != "[201]" else HEY_403.replace("[403]\t50 responses", "")
    broken = "\n".join(row for row in text.splitlines() if line not in row)
    with pytest.raises(loadgen.HeyOutputError):
        loadgen.parse_summary(broken)


class _Answer(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        status = 403 if self.path.endswith("err") else 201
        self.send_response(status)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args) -> None:
        pass


def test_real_hey_output_parses_to_what_the_server_answered() -> None:
    system_tool("hey")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        ok = loadgen.run_hey(f"{base}/ok", concurrency=2, requests=200)
        err = loadgen.run_hey(f"{base}/err", concurrency=2, requests=200)
    finally:
        server.shutdown()
    assert ok.statuses == {201: 200} and err.statuses == {403: 200}
    assert ok.rps > 0 and 0 < ok.latency(50) <= ok.latency(95) <= ok.latency(99)
