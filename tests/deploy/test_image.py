"""The container image (Dockerfile): linted, consistent with the CLI, and its settings run.

No Docker engine runs here, so the image is checked by structure (parsed Dockerfile, hadolint)
and by running what it would run: the proxy with the image's environment and its HEALTHCHECK.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from sinch_sms_exporter import cli, settings
from sinch_sms_exporter.settings import DEFAULT_METRICS_PORT
from tests.helpers.client import http, scrape, total
from tests.helpers.deploy_files import (
    DOCKERFILE,
    compose,
    dockerfile_stages,
    duration_seconds,
    final_stage,
    shutdown_grace,
)
from tests.helpers.paths import PLAN, PROXY, REPO
from tests.helpers.processes import free_port, running, start, start_simulator, wait_for_port
from tests.helpers.prometheus import system_tool


def test_unwritable_confdir_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    # A read-only root filesystem (Kubernetes' readOnlyRootFilesystem) without a volume for the
    # confdir: mitmproxy cannot create its CA there.
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = subprocess.run(
        [
            PROXY,
            "--confdir",
            str(blocker / "mitmproxy"),
            "--listen-port",
            str(free_port()),
            "--metrics-port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
    )
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("sinch-sms-proxy: error: cannot create --confdir"), lines[0]
    assert "Traceback" not in result.stderr + result.stdout


TOOLS_HINT = "make tools: the .tools virtualenv; make test puts .tools/bin on PATH"


def test_hadolint_finds_nothing() -> None:
    hadolint = system_tool("hadolint", TOOLS_HINT)
    result = subprocess.run([hadolint, "--failure-threshold", "style", str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_base_image_is_a_pinned_python_312_or_later() -> None:
    stages = dockerfile_stages()
    assert len({stage.base for stage in stages}) == 1, "build and runtime stages must share the base"
    match = re.fullmatch(r"python:3\.(\d+)\.(\d+)-slim-(\w+)", stages[-1].base)
    assert match, f"{stages[-1].base}: pin python:3.X.Y-slim-DEBIAN (mitmproxy 12 needs Python >= 3.12)"
    assert int(match.group(1)) >= 12


def test_environment_and_ports_are_the_clis() -> None:
    stage = final_stage()
    env = {k: v for k, v in stage.env().items() if k.startswith(settings.ENV_PREFIX)}
    flags = {opt for action in cli.build_parser()._actions for opt in action.option_strings}
    for name in env:
        flag = "--" + name.removeprefix(settings.ENV_PREFIX).lower().replace("_", "-")
        assert flag in flags, f"{name}: sinch-sms-proxy has no {flag}"
    parser = cli.build_parser()
    parser.apply_environment(env)  # the image's environment only, checked as the CLI checks it
    args = parser.parse_args([])
    # The image opens the proxy to its network (compose), keeps the CLI's ports.
    assert args.listen_host == "0.0.0.0"
    assert args.listen_port == settings.DEFAULT_LISTEN_PORT
    assert args.metrics_port == DEFAULT_METRICS_PORT
    assert stage.exposed_ports() == {args.listen_port, args.metrics_port}
    health = " ".join(stage.exec_form("HEALTHCHECK"))
    assert "/healthz" in health
    assert f"'SINCH_PROXY_METRICS_PORT', '{args.metrics_port}'" in health


def test_stop_signal_is_sigterm_which_drains_and_compose_waits_longer_than_the_drain() -> None:
    """docker stop sends STOPSIGNAL: SIGTERM drains (SIGKILL would lose the calls in flight and
    the unscraped counts). compose's stop_grace_period must outlast the drain."""
    assert final_stage().all("STOPSIGNAL") == ["SIGTERM"]
    grace = shutdown_grace({})
    assert grace == settings.DEFAULT_SHUTDOWN_GRACE == 25
    proxy = compose()["services"]["proxy"]
    assert proxy.get("stop_signal", "SIGTERM") == "SIGTERM"
    assert duration_seconds(proxy["stop_grace_period"]) > shutdown_grace(proxy.get("environment", {}))


def test_runs_as_a_fixed_unprivileged_user_with_a_writable_confdir() -> None:
    stage = final_stage()
    (user,) = stage.all("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) >= 1000, "numeric, so Kubernetes' runAsNonRoot can check it"
    setup = " ".join(stage.all("RUN"))
    assert f"--uid {uid}" in setup and f"--gid {gid}" in setup
    confdir = stage.env()["SINCH_PROXY_CONFDIR"]
    assert re.search(rf"install --directory --owner {uid} --group {gid} --mode 0700 {re.escape(confdir)}\b", setup)
    assert stage.exec_form("ENTRYPOINT") == ["sinch-sms-proxy"]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert "sinch-sms-proxy" in scripts


def _pins(path: Path) -> dict[str, Version]:
    """name → pinned version of a pip requirements file whose every entry is `==` with hashes."""
    pins = {}
    text = path.read_text().replace("\\\n", " ")  # pip's line continuations
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            spec_text, *hashes = (part.strip() for part in line.split("--hash="))
            requirement = Requirement(spec_text)
            (spec,) = requirement.specifier
            assert spec.operator == "==", f"{path.name}: {spec_text} is not pinned with =="
            assert hashes and all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in hashes), (
                f"{path.name}: {spec_text} has no sha256 hashes (the Dockerfile installs with --require-hashes)"
            )
            pins[canonicalize_name(requirement.name)] = Version(spec.version)
    return pins


def test_image_installs_only_hashed_pins() -> None:
    commands = [c.strip() for stage in dockerfile_stages() for run in stage.all("RUN") for c in run.split("&&")]
    for requirements in ("deploy/docker/requirements.txt", "deploy/docker/build-requirements.txt"):
        (command,) = [c for c in commands if f"--requirement {requirements}" in c]
        assert "--require-hashes" in command.split(), command
        _pins(REPO / requirements)  # and every entry of it is pinned and hashed


def test_every_dependency_is_pinned_for_python_312() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    pins = _pins(REPO / "deploy" / "docker" / "requirements.txt")
    environment = {"python_version": "3.12", "python_full_version": "3.12.11", "sys_platform": "linux"}
    for line in project["project"]["dependencies"]:
        requirement = Requirement(line)
        if requirement.marker and not requirement.marker.evaluate(environment):
            continue
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not pinned in deploy/docker/requirements.txt"
        assert requirement.specifier.contains(pins[name]), f"{name}=={pins[name]} does not satisfy {line}"
    assert pins["mitmproxy"].major == 12, "the image runs mitmproxy 12"
    build = _pins(REPO / "deploy" / "docker" / "build-requirements.txt")
    for line in project["build-system"]["requires"]:
        requirement = Requirement(line)
        assert requirement.specifier.contains(build[canonicalize_name(requirement.name)]), line


def _dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents wins."""
    parts = path.split("/")
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        glob = pattern.removeprefix("!").strip("/")
        regex = re.escape(glob).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
        if any(re.fullmatch(regex, "/".join(parts[:i])) for i in range(1, len(parts) + 1)):
            excluded = not negate
    return excluded


def test_build_context_holds_what_the_copies_need_and_nothing_else() -> None:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    sources = []
    for stage in dockerfile_stages():
        for text in stage.all("COPY"):
            if "--from=" not in text:
                sources += text.split()[:-1]
    assert sources, "no COPY found"
    for source in sources:
        assert (REPO / source).exists(), source
        assert not _dockerignore_excludes(patterns, source), f".dockerignore excludes {source}"
    assert not _dockerignore_excludes(patterns, "addon/sinch_sms_exporter/cli.py")
    kept_out = (
        ".venv/bin/python",
        ".git/HEAD",
        ".tools/bin/hadolint",
        "tests/helpers/processes.py",
        "addon/sinch_sms_exporter/__pycache__/cli.cpython-311.pyc",
        "addon/sinch_sms_exporter.egg-info/PKG-INFO",
    )
    for path in kept_out:
        assert _dockerignore_excludes(patterns, path), f"{path} would be sent to the build"


@pytest.mark.e2e
def test_the_images_settings_proxy_and_its_healthcheck_answers(tmp_path: Path) -> None:
    """The image's ENV as they are (ports moved to free ones): the proxy listens on all
    interfaces, counts, and the HEALTHCHECK command succeeds, then fails once it is gone."""
    stage = final_stage()
    listen, metrics = free_port(), free_port()
    env = {**stage.env(), "SINCH_PROXY_LISTEN_PORT": str(listen), "SINCH_PROXY_METRICS_PORT": str(metrics),
           "SINCH_PROXY_CONFDIR": str(tmp_path / "confdir")}  # fmt: skip
    env.pop("PATH")
    with running(start_simulator(tmp_path)) as sim:
        env["SINCH_PROXY_UPSTREAM"] = f"http://127.0.0.1:{sim.ports['http']}"
        proxy = start([PROXY], tmp_path / "proxy.log", env)
        with running(proxy):
            wait_for_port(listen, proc=proxy.popen)
            wait_for_port(metrics, proc=proxy.popen)
            status, _, _ = http("POST", f"http://127.0.0.1:{listen}{PLAN}/batches", b"{}", {"X-Sinch-Sim": "ok"})
            assert status == 201
            assert f"listening at *:{listen}" in proxy.log()  # 0.0.0.0: reachable from other containers
            assert total(scrape(metrics), "sinch_sms_responses_total", status="201") == 1
            check = stage.exec_form("HEALTHCHECK")
            assert check[0] == "python"
            healthy = subprocess.run([sys.executable, *check[1:]], env={**os.environ, **env}, timeout=10)
            assert healthy.returncode == 0
        unhealthy = subprocess.run([sys.executable, *check[1:]], env={**os.environ, **env}, capture_output=True)
        assert unhealthy.returncode != 0
