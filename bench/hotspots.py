"""Where sinch-sms-proxy spends its CPU under load: py-spy samples of the running process.

nginx (bench/upstream.py) answers, hey loads the proxy, and py-spy samples the proxy's
thread that holds the GIL (--gil: the metrics server's idle thread would otherwise look
busy; time in system calls, which release the GIL, is not in these samples). Printed: the
functions with the most samples of their own, and how much of all samples falls inside a
few places that matter (our hooks, mitmproxy's addon dispatch, its HTTP/1 parsing, …).
py-spy pauses the process for each sample: req/s under the profiler are lower than in
the benchmark.

    .venv/bin/python -m bench.hotspots [--mix error] [--seconds 10]

py-spy comes from PyPI (`.tools/bin/pip install py-spy`; `make bench` installs it). It
needs ptrace rights on the proxy (root, or CAP_SYS_PTRACE in a container).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench import loadgen, procs, upstream

REPO = Path(__file__).resolve().parent.parent
#: Samples whose stack passes through one of these frames are counted in that group.
GROUPS: dict[str, str] = {
    "sinch-sms-exporter hooks": r"^SinchSmsExporter\.",
    "mitmproxy addon dispatch (our hooks included)": r"^(AddonManager|HookIndex)\.(trigger_event|handle_lifecycle)",
    "mitmproxy's debug-only type checks of each Request/Response": r"^MessageData\.__post_init__",
    "mitmproxy HTTP/1 head parsing (type checks included)": r"^read_(request|response)_head",
    "asyncio task creation (mitmproxy: one per hook)": r"^create_task \(",
}


def py_spy() -> str | None:
    for candidate in (shutil.which("py-spy"), REPO / ".tools/bin/py-spy", procs.BIN / "py-spy"):
        if candidate and Path(candidate).exists():
            return str(candidate)
    return None


@dataclass
class Profile:
    samples: int
    own: list[tuple[str, float]]  # (function (file), share of samples), most first
    groups: dict[str, float]  # group → share of samples with that group's frame on the stack
    rps: float


def _frame_name(frame: str) -> str:
    """'HttpStream._handle_event (mitmproxy/proxy/layers/http/__init__.py:202)' → without the line."""
    return re.sub(r":\d+\)$", ")", frame)


def summarize(raw: str) -> tuple[int, Counter, Counter]:
    """py-spy's raw (collapsed stacks) output → (samples, own samples per function, samples per group)."""
    own: Counter = Counter()
    groups: Counter = Counter()
    total = 0
    patterns = {name: re.compile(p) for name, p in GROUPS.items()}
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [_frame_name(f) for f in stack.split(";")]
        total += int(count)
        own[frames[-1]] += int(count)
        for name, pattern in patterns.items():
            if any(pattern.match(f) for f in frames):
                groups[name] += int(count)
    return total, own, groups


def record(mix: str, seconds: float, rate: int, concurrency: int, pin: bool) -> Profile:
    spy = py_spy()
    if spy is None:
        raise SystemExit("bench: py-spy is not installed: .tools/bin/pip install py-spy (make bench does it)")
    load_cpus, proxy_cpus = ("0", "1") if pin else (None, None)
    home = Path(tempfile.mkdtemp(prefix="sinch-profile-"))
    port = procs.free_port()
    nginx = upstream.start_nginx(home / "nginx", port, load_cpus)
    proxy = None
    try:
        procs.wait_for_port(port, nginx)
        proxy = procs.start_sinch_proxy(f"http://127.0.0.1:{port}", home, proxy_cpus)
        path = {"success": upstream.SUCCESS_PATH, "error": upstream.ERROR_PATH}[mix]
        loadgen.run_hey(proxy.url(path), concurrency=concurrency, duration=1, cpus=load_cpus)  # warm up
        hey = subprocess.Popen(
            loadgen.hey_argv(proxy.url(path), concurrency=concurrency, duration=seconds + 2, cpus=load_cpus),
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(1)
        out = home / "profile.txt"
        spy_run = subprocess.run(
            [spy, "record", "--pid", str(proxy.pid), "--gil", "--rate", str(rate), "--duration", str(int(seconds)),
             "--format", "raw", "--output", str(out)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        hey_out, _ = hey.communicate()
        if spy_run.returncode != 0 or not out.exists():
            raise SystemExit(f"bench: py-spy failed: {spy_run.stderr.strip()[-500:]}")
        total, own, groups = summarize(out.read_text())
    finally:
        if proxy is not None:
            proxy.stop()
        nginx.terminate()
        nginx.wait()
        shutil.rmtree(home, ignore_errors=True)
    if not total:
        raise SystemExit("bench: py-spy recorded no samples")
    return Profile(
        total,
        [(name, n / total) for name, n in own.most_common()],
        {name: groups[name] / total for name in GROUPS},
        loadgen.parse_summary(hey_out).rps,
    )


def report(profile: Profile, mix: str, top: int) -> str:
    lines = [
        f"py-spy --gil, {profile.samples:,} samples, {mix} mix at {profile.rps:,.0f} req/s; own time:",
        "",
        "| own % | function (file) |",
        "| ---: | --- |",
    ]
    lines += [f"| {share * 100:.1f} | `{name}` |" for name, share in profile.own[:top]]
    lines += ["", "| inclusive % | where |", "| ---: | --- |"]
    lines += [f"| {share * 100:.1f} | {name} |" for name, share in profile.groups.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mix", choices=("success", "error"), default="error")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rate", type=int, default=250, help="samples per second")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--no-pin", action="store_true")
    args = parser.parse_args(argv)
    profile = record(args.mix, args.seconds, args.rate, args.concurrency, not args.no_pin)
    print(report(profile, args.mix, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
