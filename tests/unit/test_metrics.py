"""The exporter's own process metrics: the alert rules read process_start_time_seconds
to tell a restarted proxy (counters reborn) from a steady one."""

from __future__ import annotations

import subprocess
import sys
import time

SCRIPT = """
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sinch_sms_exporter.metrics import Metrics
text = generate_latest(Metrics().registry).decode()
for family in text_string_to_metric_families(text):
    for sample in family.samples:
        if sample.name.startswith("process_"):
            print(sample.name, sample.value)
"""


def test_process_start_time_is_the_exporters_own_start() -> None:
    before = time.time()
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True).stdout
    after = time.time()
    values = {name: float(value) for name, value in (line.split() for line in out.splitlines())}
    # A fresh process: its start lies between spawning it and its exit (clock-tick rounding: 1 s).
    assert before - 1 <= values["process_start_time_seconds"] <= after
    assert values["process_resident_memory_bytes"] > 1_000_000
