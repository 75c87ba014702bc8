"""Drive Debian's `hey` and read its summary.

hey prints a human summary; we read only the lines we need (requests/s, the latency
percentiles, the status code counts, the error lines) and fail loudly when one is missing,
so a changed hey output format can never turn into a silently wrong table.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field

#: Request body of the benchmark's POST /batches (the shape of a Sinch "send SMS" call).
REQUEST_BODY = '{"from":"12345","to":["46700000001"],"body":"Your code is 123456"}'

_RPS = re.compile(r"^\s*Requests/sec:\s+([0-9.]+)\s*$", re.MULTILINE)
_TOTAL = re.compile(r"^\s*Total:\s+([0-9.]+) secs\s*$", re.MULTILINE)
_PERCENTILE = re.compile(r"^\s*(\d+)%+ in ([0-9.]+) secs\s*$", re.MULTILINE)
_STATUS = re.compile(r"^\s*\[(\d{3})\]\s+(\d+) responses\s*$", re.MULTILINE)
_ERRORS = re.compile(r"^Error distribution:\n((?:\s+\[\d+\].*\n?)+)", re.MULTILINE)
_ERROR_LINE = re.compile(r"^\s*\[(\d+)\]\s+(.*?)\s*$", re.MULTILINE)


class HeyOutputError(ValueError):
    """hey's output lacks a line the benchmark needs."""


@dataclass
class HeyResult:
    """One hey run: throughput, latency percentiles (seconds), answers by status, errors."""

    rps: float
    total_seconds: float
    percentiles: dict[int, float]
    statuses: dict[int, int]
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        """Requests that got an answer (hey's -z runs end with a partial batch; errors apart)."""
        return sum(self.statuses.values())

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def latency(self, percentile: int) -> float:
        """Seconds; hey omits a percentile it has too few answers for (it prints "0% in 0.0000")."""
        try:
            return self.percentiles[percentile]
        except KeyError:
            raise HeyOutputError(f"hey printed no {percentile}% latency ({self.requests} answers)") from None


def parse_summary(text: str) -> HeyResult:
    """Parse hey's default (summary) output; raises HeyOutputError if a needed line is missing."""
    rps = _RPS.search(text)
    total = _TOTAL.search(text)
    if rps is None or total is None:
        raise HeyOutputError("no 'Requests/sec' or 'Total' line in hey's output:\n" + text[-2000:])
    percentiles = {int(p): float(s) for p, s in _PERCENTILE.findall(text)}
    errors: dict[str, int] = {}
    block = _ERRORS.search(text)
    if block:
        for count, message in _ERROR_LINE.findall(block.group(1)):
            errors[message] = errors.get(message, 0) + int(count)
    statuses = {int(s): int(n) for s, n in _STATUS.findall(text)}
    if not statuses and not errors:
        raise HeyOutputError("hey reported neither answers nor errors:\n" + text[-2000:])
    return HeyResult(float(rps.group(1)), float(total.group(1)), percentiles, statuses, errors)


def hey_binary() -> str:
    path = shutil.which("hey")
    if path is None:
        raise SystemExit("bench: hey is not installed (Debian package hey: apt-get install hey)")
    return path


def hey_argv(
    url: str,
    *,
    concurrency: int,
    duration: float | None = None,
    requests: int | None = None,
    cpus: str | None = None,
    body: str = REQUEST_BODY,
    headers: tuple[str, ...] = (),
) -> list[str]:
    """A POST of a small JSON body (and `headers`, "Name: value"), keep-alive (hey's default),
    for a duration or a count."""
    argv = [hey_binary(), "-c", str(concurrency), "-m", "POST", "-T", "application/json", "-d", body]
    for header in headers:
        argv += ["-H", header]
    argv += ["-z", f"{duration:g}s"] if duration is not None else ["-n", str(requests)]
    argv.append(url)
    if cpus:
        argv = ["taskset", "-c", cpus, *argv]
    return argv


def run_hey(url: str, **kwargs) -> HeyResult:
    argv = hey_argv(url, **kwargs)
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"hey failed ({done.returncode}): {done.stderr.strip() or done.stdout[-1000:]}")
    return parse_summary(done.stdout)
