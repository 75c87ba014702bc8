"""`make demo` as a user runs it: `python -m tools.demo`, a real process that starts
the simulator and the proxy, prints where to look, drives traffic, and stops cleanly."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.client import scrape, total
from tests.helpers.paths import REPO
from tests.helpers.processes import free_port, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


class Demo:
    def __init__(self, tmp: Path, *args: str) -> None:
        self.ports = {name: free_port() for name in ("listen", "metrics", "simulator", "callback", "receiver")}
        self.out = tmp / "demo.out"
        argv = [sys.executable, "-m", "tools.demo", "--listen-port", str(self.ports["listen"]),
                "--metrics-port", str(self.ports["metrics"]), "--simulator-port", str(self.ports["simulator"]),
                "--callback-port", str(self.ports["callback"]), "--receiver-port", str(self.ports["receiver"]),
                "--rate", "60", "--report-every", "1", "--seed", "5", *args]  # fmt: skip
        with open(self.out, "wb") as out:
            # a session of its own, as a terminal's foreground job: Ctrl-C is SIGINT to its group
            self.popen = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)

    def workdir(self) -> Path:
        """The demo's work directory (its components' logs), from the 'where to look' lines."""
        logs = re.search(r"logs:\s+(\S+)/proxy\.log", self.output())
        assert logs, self.output()[-3000:]
        return Path(logs.group(1))

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def wait_running(self) -> str:
        """The output up to the 'where to look' lines, printed once the first round is through."""

        def printed() -> str:
            if self.popen.poll() is not None:
                pytest.fail(f"the demo exited with {self.popen.returncode}:\n{self.output()[-3000:]}")
            return "Ctrl-C stops everything" in (text := self.output()) and text

        try:
            return wait_until(printed, timeout=40, what="the demo's 'where to look' lines")
        except TimeoutError as exc:
            pytest.fail(f"{exc}; output:\n{self.output()[-3000:]}")

    def wait_exit(self, timeout: float = 20.0) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            pytest.fail(f"the demo did not stop within {timeout} s:\n{self.output()[-3000:]}")

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


def _assert_clean_stop(demo: Demo, code: int) -> None:
    text = demo.output()
    assert code == 0, text[-3000:]
    assert "Traceback" not in text and "make demo: error" not in text, text[-3000:]
    assert "make demo: stopping the proxy, the receiver and the simulator" in text
    # the components went with it: nothing listens on their ports any more
    assert [p for p in demo.ports.values() if _listening(p)] == []
    # and so did its work directory (/tmp/sinch-demo-*: the components' logs)
    assert demo.workdir().name.startswith("sinch-demo-") and not demo.workdir().exists()


def test_demo_prints_where_to_look_shows_every_kind_of_answer_and_stops_on_sigint(tmp_path) -> None:
    demo = Demo(tmp_path)
    try:
        text = demo.wait_running()
        listen, metrics = demo.ports["listen"], demo.ports["metrics"]
        assert f"The proxy: http://127.0.0.1:{listen} (upstream: the simulator on :{demo.ports['simulator']})" in text
        assert f"curl -s http://127.0.0.1:{metrics}/metrics" in text
        assert f"scrape 127.0.0.1:{metrics}" in text
        logs = re.search(r"logs:\s+(\S+)/proxy\.log", text)
        assert logs and Path(logs.group(1), "proxy.log").exists()

        # the first round (every catalog answer, a drop, an unknown path), then steady traffic
        before = total(scrape(metrics), "sinch_sms_responses_total")
        samples = wait_until(
            lambda: (
                (s := scrape(metrics))
                and total(s, "sinch_sms_responses_total") >= before + 60
                and total(s, "sinch_sms_delivery_reports_total") >= 20
                and s
            ),
            timeout=20,
            what="steady traffic after the first round, and delivery reports",
        )
        demo_summaries = demo.output().count("sinch_sms_responses_total by status and code:")
    finally:
        if demo.popen.poll() is None:
            demo.popen.send_signal(signal.SIGINT)
        code = demo.wait_exit()
        demo.kill()

    responses = {labels: v for (name, labels), v in samples.items() if name == "sinch_sms_responses_total"}
    by_status: dict[str, float] = {}
    codes = set()
    for labels, value in responses.items():
        label = dict(labels)
        by_status[label["status"]] = by_status.get(label["status"], 0) + value
        codes.add(label["code"])
        assert label["region"] == "us"
        if label["endpoint"] == "other":  # a path outside the API: 404 and no code, whatever the scenario
            assert (label["status"], label["code"]) == ("404", ""), label
    successes = sum(v for s, v in by_status.items() if s.startswith("2"))
    assert successes > 0.5 * total(samples, "sinch_sms_responses_total"), by_status
    assert {"blocked_account", "missing_callback_url", "syntax_invalid_json", "unknown_group"} <= codes, codes
    assert by_status.get("404", 0) >= 2 and by_status.get("429", 0) >= 1, by_status
    assert sum(v for s, v in by_status.items() if s.startswith("5")) >= 2, by_status
    assert total(samples, "sinch_sms_responses_total", endpoint="other", status="404") >= 1
    assert total(samples, "sinch_sms_upstream_errors_total", reason="closed") >= 1
    assert demo_summaries >= 1
    _assert_clean_stop(demo, code)
    # the callbacks: delivery reports of every setting through the listener, inbound messages, retries
    for kind in ("recipient_delivery_report_sms", "mo_text", "mo_binary", "mo_media"):
        assert total(samples, "sinch_sms_callbacks_total", type=kind) >= 1, kind
    assert total(samples, "sinch_sms_delivery_reports_total", status="delivered") >= 10
    assert total(samples, "sinch_sms_callbacks_total", type="", status="200") == 0
    assert "messages by delivery status:" in demo.output()
    assert demo.output().rstrip().endswith("make demo: stopping the proxy, the receiver and the simulator")


def test_demo_stops_cleanly_on_sigterm(tmp_path) -> None:
    demo = Demo(tmp_path)
    try:
        demo.wait_running()
        time.sleep(1.0)
        demo.popen.send_signal(signal.SIGTERM)
        code = demo.wait_exit()
    finally:
        demo.kill()
    _assert_clean_stop(demo, code)


def test_demo_ends_by_itself_after_duration(tmp_path) -> None:
    demo = Demo(tmp_path, "--duration", "2")
    try:
        demo.wait_running()
        started = time.monotonic()
        code = demo.wait_exit()
        elapsed = time.monotonic() - started
    finally:
        demo.kill()
    _assert_clean_stop(demo, code)
    assert 1.5 < elapsed < 15, elapsed
    # the last summary is printed after the traffic ends, with the counts of the whole run
    assert "sinch_sms_responses_total by status and code:" in demo.output()


def _summaries(text: str) -> list[float]:
    """The total count of each `sinch_sms_responses_total by status and code:` block."""
    blocks = text.split("sinch_sms_responses_total by status and code:\n")[1:]
    totals = []
    for block in blocks:
        counts = re.findall(r"^  [1-5]\d\d .*?(\d+)$", block.split("\n\n")[0], re.MULTILINE)
        totals.append(sum(float(c) for c in counts))
    return totals


def test_ctrl_c_to_the_whole_group_prints_the_last_summary_and_stops_cleanly(tmp_path) -> None:
    """A terminal's Ctrl-C is SIGINT to the whole foreground process group, components
    included: the demo still prints a last summary with every answer counted so far (the
    proxy answers it), then stops the components and removes its work directory."""
    demo = Demo(tmp_path)
    try:
        demo.wait_running()
        counted = wait_until(
            lambda: (n := total(scrape(demo.ports["metrics"]), "sinch_sms_responses_total")) >= 60 and n,
            timeout=20,
            what="some steady traffic",
        )
        # the group's SIGINT reaches only the demo: its components (simulator, receiver, proxy)
        # have process groups of their own
        children = Path(f"/proc/{demo.popen.pid}/task/{demo.popen.pid}/children").read_text().split()
        assert len(children) == 3 and all(os.getpgid(int(c)) != demo.popen.pid for c in children), children
        before = len(demo.output())
        os.killpg(demo.popen.pid, signal.SIGINT)
        code = demo.wait_exit()
    finally:
        if demo.popen.poll() is None:
            os.killpg(demo.popen.pid, signal.SIGKILL)
        demo.kill()
    _assert_clean_stop(demo, code)
    after = demo.output()[before:]
    assert after.rstrip().endswith("make demo: stopping the proxy, the receiver and the simulator"), after[-2000:]
    last = _summaries(after)
    assert last and last[-1] >= counted, after[-2000:]
