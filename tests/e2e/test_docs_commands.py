"""The commands the README and docs/*.md tell a user to type work as written: each is taken
from the Markdown (code spans and fenced code blocks) and run for real."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.client import scrape
from tests.helpers.paths import REPO
from tests.helpers.processes import free_port, running, start, wait_for_port
from tests.helpers.prometheus import system_tool
from tests.helpers.sockets import sockets_of

DOCS = (REPO / "README.md", *sorted((REPO / "docs").glob("*.md")))
_FENCE = re.compile(r"^\s*```")
_SPAN = re.compile(r"`([^`]+)`")


def snippets(path: Path) -> list[str]:
    """Every inline code span (also one broken across lines) and every command line of a
    fenced block (backslash continuations joined, comment lines dropped), whitespace collapsed."""
    found: list[str] = []
    prose: list[str] = []
    in_block, pending = False, ""
    for line in path.read_text().splitlines():
        if _FENCE.match(line):
            in_block, pending = not in_block, ""
        elif not in_block:
            prose.append(line)
        elif line.strip() and not line.lstrip().startswith("#"):
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
            else:
                found.append(pending + line)
                pending = ""
    found += _SPAN.findall("\n".join(prose))
    return [" ".join(s.split()) for s in found if s.strip()]


def documented(tool: str, paths: tuple[Path, ...] = DOCS) -> list[tuple[str, str]]:
    """(file name, command) of every snippet that runs `tool`, alone or after `cd DIR &&`."""
    pattern = re.compile(rf"^(cd \S+ && )?{re.escape(tool)}( |$)")
    return [(p.name, s) for p in paths for s in snippets(p) if pattern.match(s)]


def test_snippets_are_found_in_spans_across_lines_and_continued_block_lines(tmp_path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "Run `promtool check config\nprometheus/prometheus.yml` first.\n\n"
        "```sh\n# a comment\nmitmdump -q \\\n   --mode reverse:x   # trailing\nls -l\n```\n"
    )
    assert snippets(page) == [
        "mitmdump -q --mode reverse:x # trailing",
        "ls -l",
        "promtool check config prometheus/prometheus.yml",
    ]


def _names_a_file(command: str) -> bool:
    """`promtool test rules` in prose names a subcommand; a command to run names a file."""
    return any("/" in word or word.endswith(".yml") for word in shlex.split(command)[1:])


@pytest.mark.e2e
def test_every_documented_promtool_command_succeeds() -> None:
    """Each `promtool …` command that names a file, from the repo root (where the README's
    commands are typed), exits 0. `promtool check rules prometheus/*.yml` did not: the glob
    takes in prometheus.yml, the server's config."""
    system_tool("promtool")
    commands = sorted({c for _, c in documented("promtool") if _names_a_file(c)})
    # the README's and docs/alerts.md's rule check, the unit tests and the config check at least
    assert {
        "promtool check rules prometheus/alerts.yml prometheus/recording.yml",
        "cd prometheus/tests && promtool test rules *_test.yml",
        "promtool check config prometheus/prometheus.yml",
    } <= set(commands), commands
    failed = []
    for command in commands:
        result = subprocess.run(["bash", "-c", command], cwd=REPO, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            failed.append(f"{command!r} exited {result.returncode}:\n{result.stdout[-800:]}{result.stderr[-800:]}")
    assert not failed, "\n".join(failed)


@pytest.mark.e2e
def test_the_readme_mitmdump_command_listens_on_loopback_only(tmp_path) -> None:
    """The README's `mitmdump -s` command, run as written (from the venv, as the README says)
    with free ports and a scratch confdir added: its proxy port is bound to 127.0.0.1 and to
    nothing else (no 0.0.0.0, no ::), as the Security section promises."""
    [command] = [c for _, c in documented("mitmdump", (REPO / "README.md",)) if " -s " in c]
    listen, metrics = free_port(), free_port()
    extra = f"--listen-port {listen} --set sinch_metrics_port={metrics} --set confdir={tmp_path / 'mitmproxy'}"
    env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    with running(start(["bash", "-c", f"exec {command} {extra}"], tmp_path / "mitmdump.log", env)) as proc:
        wait_for_port(listen, proc=proc.popen)
        wait_for_port(metrics, proc=proc.popen)
        assert scrape(metrics)  # the addon runs: /metrics answers
        on_port = [s for s in sockets_of(proc.popen.pid) if s.port == listen]
    tcp = [s for s in on_port if s.protocol == "tcp"]
    assert tcp and {s.host for s in tcp} == {"127.0.0.1"}, on_port
    assert {s.host for s in on_port} == {"127.0.0.1"}, on_port  # whatever else mitmproxy opens there too
