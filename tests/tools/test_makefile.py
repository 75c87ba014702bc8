"""What a new user reads first: `make help` and the README's own examples say what exists."""

from __future__ import annotations

import re
import shlex
import subprocess

from sinch_sms_exporter import cli
from tests.helpers.paths import REPO
from tests.helpers.processes import free_port


def makefile_targets() -> set[str]:
    """Every target a user can type: the rules of the Makefile that are not files or patterns."""
    text = (REPO / "Makefile").read_text()
    rules = set(re.findall(r"^([a-z][a-z0-9-]*):(?!=)", text, re.MULTILINE))
    phony = set(re.search(r"^\.PHONY:(.*)$", text, re.MULTILINE).group(1).split())
    return rules | phony


def test_make_help_lists_every_target() -> None:
    targets = makefile_targets()
    assert {"venv", "format", "test-fast", "run", "demo", "stack", "test", "bench"} <= targets, targets
    out = subprocess.run(["make", "-s", "help"], cwd=REPO, capture_output=True, text=True, timeout=30, check=True)
    missing = sorted(t for t in targets if not re.search(rf"\bmake {re.escape(t)}(?![\w-])", out.stdout))
    assert missing == [], out.stdout


def test_every_phony_target_is_a_rule_and_every_rule_is_phony() -> None:
    """A target missing from .PHONY stops working once a file of that name exists (`venv`)."""
    text = (REPO / "Makefile").read_text()
    rules = set(re.findall(r"^([a-z][a-z0-9-]*):(?!=)", text, re.MULTILINE))
    phony = set(re.search(r"^\.PHONY:(.*)$", text, re.MULTILINE).group(1).split())
    assert rules == phony


def test_the_readme_make_run_example_for_another_region_parses_to_that_region() -> None:
    """`make run ARGS="--upstream https://eu.sms.api.sinch.com"`: the flags it passes make a
    reverse proxy to eu whose answers are labelled region="eu"."""
    readme = (REPO / "README.md").read_text()
    found = re.search(r'make run ARGS="(--upstream https://eu\.sms\.api\.sinch\.com)"', readme)
    assert found, "the README shows no make run example for another region"
    listen, metrics = free_port(), free_port()
    args = [*shlex.split(found.group(1)), "--listen-port", str(listen), "--metrics-port", str(metrics)]
    settings = cli.settings_from(cli.build_parser().parse_args(args))
    assert settings["mode"] == [f"reverse:https://eu.sms.api.sinch.com@{listen}"]
    assert settings["sinch_regions"] == ["eu.sms.api.sinch.com:443=eu"]
