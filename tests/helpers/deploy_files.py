"""Parsers for the deployment files the tests check by structure (no Docker engine, no
Kubernetes here): the Dockerfile's final stage, docker-compose.yml with its ${VAR:-default}
interpolation, the Kubernetes manifests, and the job name the alert rules depend on."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from tests.helpers.paths import REPO

DOCKERFILE = REPO / "Dockerfile"
COMPOSE = REPO / "docker-compose.yml"
KUBERNETES = REPO / "deploy" / "kubernetes"


def load_yaml(path: Path) -> Any:
    return YAML(typ="safe").load(path.read_text())


def load_yaml_all(path: Path) -> list[Any]:
    return [doc for doc in YAML(typ="safe").load_all(path.read_text()) if doc is not None]


@dataclass
class Stage:
    """One FROM … stage: its base image and instructions in order ([(INSTRUCTION, text)])."""

    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, instruction: str) -> list[str]:
        return [text for kind, text in self.instructions if kind == instruction]

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for text in self.all("ENV"):
            for token in shlex.split(text):
                key, _, value = token.partition("=")
                values[key] = value
        return values

    def exposed_ports(self) -> set[int]:
        return {int(p.split("/")[0]) for text in self.all("EXPOSE") for p in text.split()}

    def exec_form(self, instruction: str) -> list[str]:
        """The JSON (exec form) argument list of ENTRYPOINT/CMD, or of HEALTHCHECK's CMD."""
        (text,) = self.all(instruction)
        if instruction == "HEALTHCHECK":
            text = text[text.index("CMD ") + 4 :]
        return json.loads(text)


def dockerfile_stages(path: Path = DOCKERFILE) -> list[Stage]:
    """Logical lines (continuations joined, comments dropped), grouped by stage; ARG defaults
    declared before the first FROM are substituted into FROM lines."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        if raw.lstrip().startswith("#") or not raw.strip():
            continue
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        logical.append((pending + raw).strip())
        pending = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        kind, _, text = line.partition(" ")
        kind, text = kind.upper(), text.strip()
        if kind == "ARG" and not stages:
            name, _, default = text.partition("=")
            args[name] = default
        elif kind == "FROM":
            image, *rest = text.split()
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m.group(1) or m.group(2)], image)
            name = rest[1] if len(rest) == 2 and rest[0].upper() == "AS" else None
            stages.append(Stage(image, name))
        else:
            stages[-1].instructions.append((kind, text))
    return stages


def final_stage() -> Stage:
    return dockerfile_stages()[-1]


_INTERPOLATION = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def interpolate(value: Any, environ: dict[str, str] | None = None) -> Any:
    """docker compose's ${VAR}, ${VAR:-default} and ${VAR-default}, with `environ` (default: none)."""
    if isinstance(value, str):
        return _INTERPOLATION.sub(lambda m: (environ or {}).get(m.group(1)) or (m.group(2) or ""), value)
    if isinstance(value, dict):
        return {k: interpolate(v, environ) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, environ) for v in value]
    return value


def compose() -> dict[str, Any]:
    return interpolate(load_yaml(COMPOSE))


def container_ports(service: dict[str, Any]) -> set[int]:
    """Container-side ports a compose service publishes or exposes."""
    ports = {int(str(p).rsplit(":", 1)[-1].split("/")[0]) for p in service.get("ports", [])}
    return ports | {int(str(p).split("/")[0]) for p in service.get("expose", [])}


def alert_rules_job() -> str:
    """The scrape job the alert rules name (SinchSmsExporterDown's up{job="…"})."""
    for group in load_yaml(REPO / "prometheus" / "alerts.yml")["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == "SinchSmsExporterDown":
                jobs = set(re.findall(r'up\{job="([^"]+)"\}', rule["expr"]))
                assert len(jobs) == 1, rule["expr"]
                return jobs.pop()
    raise AssertionError("prometheus/alerts.yml has no SinchSmsExporterDown")


def project_version() -> str:
    import tomllib

    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def duration_seconds(text: str) -> float:
    """A compose/Go duration ("30s", "1m30s", "500ms") in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"not a duration: {text!r}"
    return sum(float(n) * units[u] for n, u in parts)


def shutdown_grace(environment: dict[str, str]) -> float:
    """The proxy's --shutdown-grace under these SINCH_PROXY_* variables (over the image's),
    as the CLI reads them."""
    from sinch_sms_exporter import cli, settings

    parser = cli.build_parser()
    image = {k: v for k, v in final_stage().env().items() if k.startswith(settings.ENV_PREFIX)}
    parser.apply_environment({**image, **environment})
    return settings.parse_grace(str(parser.parse_args([]).shutdown_grace))
