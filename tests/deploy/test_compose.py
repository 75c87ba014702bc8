"""docker-compose.yml, checked with the real tools that run here (no Docker engine does):
the compose-spec schema, the mounted files, promtool on the Prometheus config as the container
sees it, amtool on Alertmanager's, scrape and alerting targets against the services and their
ports, the proxy's settings against the CLI, and Grafana's provisioning against the dashboards.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

from ruamel.yaml import YAML

from sinch_sms_exporter import cli, settings
from tests.helpers.deploy_files import (
    COMPOSE,
    alert_rules_job,
    compose,
    container_ports,
    duration_seconds,
    final_stage,
    interpolate,
    load_yaml,
    project_version,
    shutdown_grace,
)
from tests.helpers.paths import REPO
from tests.helpers.prometheus import system_tool
from tools import stack

TOOLS_HINT = "make tools: the .tools virtualenv; make test puts .tools/bin on PATH"
SINCH_IMAGE = "sinch-sms-exporter"
GRAFANA_BUILTIN = "-- Grafana --"  # the annotations' built-in datasource


def _services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def _bind_mounts(service: dict[str, Any]) -> list[tuple[Path, PurePosixPath]]:
    """(repo path, container path) of the service's bind mounts (named volumes left out)."""
    mounts = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts.append(((COMPOSE.parent / source).resolve(), PurePosixPath(target)))
    return mounts


def _container_root(tmp: Path, service: dict[str, Any]) -> Path:
    """The service's bind mounts copied to where the container sees them, under tmp."""
    root = tmp / "root"
    for source, target in _bind_mounts(service):
        destination = root / target.relative_to("/")
        if source.is_dir():
            shutil.copytree(source, destination)
        else:
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)
    return root


def _flag(service: dict[str, Any], name: str) -> str:
    values = [arg.split("=", 1)[1] for arg in service.get("command", []) if arg.startswith(f"{name}=")]
    assert len(values) == 1, f"{name} not in {service.get('command')}"
    return values[0]


def _host_path(service: dict[str, Any], container_path: str) -> Path:
    """The repo path a container path comes from, through the service's bind mounts."""
    path = PurePosixPath(container_path)
    for source, target in _bind_mounts(service):
        if path == target or target in path.parents:
            return source / path.relative_to(target)
    raise AssertionError(f"{container_path} is not mounted from the repo")


def test_compose_file_matches_the_compose_spec_schema() -> None:
    checker = system_tool("check-jsonschema", TOOLS_HINT)
    result = subprocess.run(
        [checker, "--builtin-schema", "vendor.compose-spec", str(COMPOSE)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_mounted_path_exists_and_named_volumes_are_declared() -> None:
    declared = set(compose().get("volumes") or {})
    for name, service in _services().items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                path = (COMPOSE.parent / source).resolve()
                assert path.exists(), f"{name}: {source} does not exist"
                assert REPO in path.parents or path == REPO, f"{name}: {source} is outside the repo"
            else:
                assert source in declared, f"{name}: volume {source} is not declared"
    assert (COMPOSE.parent / "Dockerfile").is_file()


def test_images_are_pinned_and_the_proxy_image_is_this_version() -> None:
    for name, service in _services().items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        if repository == SINCH_IMAGE:
            assert tag == project_version(), name
            assert service["build"] == ".", f"{name}: built from this repo's Dockerfile"
        else:
            assert re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{name}: pin {image} to a release"


def test_prometheus_config_passes_promtool_as_the_container_sees_it(tmp_path: Path) -> None:
    prometheus = _services()["prometheus"]
    config = _flag(prometheus, "--config.file")
    assert _host_path(prometheus, config) == REPO / "prometheus" / "prometheus.yml"
    root = _container_root(tmp_path, prometheus)
    # Relative rule_files resolve next to the config file, in the container as in the copy. An
    # absolute one would name a container path: rewrite the copy to find it under `root`.
    copy = root / config.lstrip("/")
    doc = load_yaml(copy)
    doc["rule_files"] = [str(root / f.lstrip("/")) if f.startswith("/") else f for f in doc.get("rule_files", [])]
    with open(copy, "w") as out:
        YAML(typ="safe").dump(doc, out)
    result = subprocess.run([system_tool("promtool"), "check", "config", str(copy)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 2 rule files found" in result.stdout
    loaded = sorted(re.findall(r"Checking (\S+)\n\s+SUCCESS: \d+ rules found", result.stdout))
    expected = sorted(str(copy.parent / name) for name in ("alerts.yml", "recording.yml"))
    assert loaded == expected, result.stdout


def test_scrape_and_alerting_targets_are_compose_services_and_their_ports() -> None:
    services = _services()
    config = load_yaml(REPO / "prometheus" / "prometheus.yml")

    def check(target: str, what: str) -> str:
        host, _, port = target.rpartition(":")
        service = "prometheus" if host == "localhost" else host  # Prometheus scraping itself
        assert service in services, f"{what}: {host} is no compose service"
        assert int(port) in container_ports(services[service]), f"{what}: {service} has no port {port}"
        return service

    jobs = {}
    for job in config["scrape_configs"]:
        jobs[job["job_name"]] = {check(t, job["job_name"]) for s in job["static_configs"] for t in s["targets"]}
    assert jobs[alert_rules_job()] == {"proxy"}, "SinchSmsExporterDown's job must scrape the proxy"
    metrics_port = int(final_stage().env()["SINCH_PROXY_METRICS_PORT"])
    proxy_job = next(j for j in config["scrape_configs"] if j["job_name"] == alert_rules_job())
    assert proxy_job["static_configs"][0]["targets"] == [f"proxy:{metrics_port}"]
    alerting = [t for am in config["alerting"]["alertmanagers"] for s in am["static_configs"] for t in s["targets"]]
    assert {check(t, "alerting") for t in alerting} == {"alertmanager"}


def test_alertmanager_config_is_valid_and_pages_critical_only(tmp_path: Path) -> None:
    alertmanager = _services()["alertmanager"]
    config_path = _flag(alertmanager, "--config.file")
    assert _host_path(alertmanager, config_path) == REPO / "alertmanager" / "alertmanager.yml"
    config = str(_container_root(tmp_path, alertmanager) / config_path.lstrip("/"))
    amtool = system_tool("amtool")
    check = subprocess.run([amtool, "check-config", config], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    for labels, receiver in (
        (["severity=critical", "alertname=SinchSmsAccountBlocked"], "pager"),
        (["severity=warning", "alertname=SinchSmsRateLimited"], "default"),
    ):
        routed = subprocess.run(
            [amtool, "config", "routes", "test", f"--config.file={config}", f"--verify.receivers={receiver}", *labels],
            capture_output=True,
            text=True,
        )
        assert routed.returncode == 0, f"{labels}: {routed.stdout}{routed.stderr}"
    # The pager URL is a documented placeholder, the one `make stack` replaces with its own pager.
    urls = [w["url"] for r in load_yaml(Path(config))["receivers"] for w in r.get("webhook_configs", [])]
    assert [u.split("/")[2].endswith(stack.PLACEHOLDER_SUFFIX) for u in urls] == [True]


def test_proxy_settings_are_the_clis_and_the_demo_traffic_reaches_the_simulator() -> None:
    services = _services()
    proxy = services["proxy"]
    flags = {opt for action in cli.build_parser()._actions for opt in action.option_strings}
    for name in proxy["environment"]:
        assert "--" + name.removeprefix(settings.ENV_PREFIX).lower().replace("_", "-") in flags, name
    image_port = int(final_stage().env()["SINCH_PROXY_LISTEN_PORT"])

    def upstreams(environment: dict[str, str]) -> list[cli.Upstream]:
        env = {**proxy["environment"], **environment}
        return cli.parse_upstreams(
            env["SINCH_PROXY_UPSTREAM"].split(","), env["SINCH_PROXY_REGION"].split(","), image_port
        )

    default = upstreams({})
    assert (default[0].url, default[0].listen_port, default[0].region) == ("https://us.sms.api.sinch.com", 8080, "us")
    assert {u.listen_port for u in default} <= container_ports(proxy)
    assert int(final_stage().env()["SINCH_PROXY_METRICS_PORT"]) in container_ports(proxy)
    # The documented override (docker-compose.yml's header) parses too.
    raw = load_yaml(COMPOSE)["services"]["proxy"]["environment"]
    eu = cli.parse_upstreams(
        interpolate(raw["SINCH_PROXY_UPSTREAM"], {"SINCH_UPSTREAM": "https://eu.sms.api.sinch.com"}).split(","),
        interpolate(raw["SINCH_PROXY_REGION"], {"SINCH_REGION": "eu"}).split(","),
        image_port,
    )
    assert [(u.host, u.region, u.listen_port) for u in eu] == [("eu.sms.api.sinch.com", "eu", 8080)]

    simulator, traffic = services["simulator"], services["traffic"]
    assert simulator["profiles"] == traffic["profiles"] == ["demo"]
    assert all("profiles" not in services[name] for name in ("proxy", "prometheus", "alertmanager", "grafana"))
    sim_args = simulator["command"]
    sim_port = int(sim_args[sim_args.index("--port") + 1])
    assert sim_args[sim_args.index("--host") + 1] == "0.0.0.0"
    assert f"('127.0.0.1', {sim_port})" in simulator["healthcheck"]["test"][-1]
    target = traffic["command"][traffic["command"].index("--target") + 1]
    host, _, port = target.removeprefix("http://").partition(":")
    assert host == "proxy"
    (demo,) = [u for u in default if u.listen_port == int(port)]
    assert (demo.url, demo.region) == (f"http://simulator:{sim_port}", "demo")
    assert traffic["entrypoint"] == ["python", "-m", "sinch_sms_exporter.sim.traffic"]
    assert simulator["entrypoint"] == ["sinch-sms-simulator"]

    # Callbacks: the simulator calls the callback listener the traffic names; it passes to the receiver.
    receiver = services["receiver"]
    assert receiver["profiles"] == ["demo"] and receiver["entrypoint"] == ["sinch-sms-receiver"]
    receiver_port = int(receiver["command"][receiver["command"].index("--port") + 1])
    # Without the demo no callback listener: `receiver` exists only under --profile demo, and a
    # listener passing to a name that does not resolve would fail every callback.
    assert proxy["environment"]["SINCH_PROXY_CALLBACK_UPSTREAM"] == ""
    # The demo command (the header's, the same in docs/deploy.md and README.md) names the receiver.
    demo_upstream = _demo_callback_upstream()
    demo_env = interpolate(raw["SINCH_PROXY_CALLBACK_UPSTREAM"], {"SINCH_CALLBACK_UPSTREAM": demo_upstream})
    (listener,) = cli.parse_upstreams(demo_env.split(","), [], 8090)
    assert (listener.url, listener.listen_port) == (f"http://receiver:{receiver_port}", 8090)
    assert listener.listen_port in container_ports(proxy)
    callback_url = traffic["command"][traffic["command"].index("--callback-url") + 1]
    assert callback_url.startswith(f"http://proxy:{listener.listen_port}/")


DEMO_COMMAND = re.compile(r"SINCH_CALLBACK_UPSTREAM=(\S+) docker compose --profile demo up -d")


def _demo_callback_upstream() -> str:
    """SINCH_CALLBACK_UPSTREAM of the demo command, the same in every place that gives it."""
    found = {
        path.name: DEMO_COMMAND.findall(path.read_text())
        for path in (COMPOSE, REPO / "docs" / "deploy.md", REPO / "README.md")
    }
    values = {value for values in found.values() for value in values}
    assert all(found.values()) and len(values) == 1, found
    return values.pop()


def test_proxy_outlasts_its_drain_and_stops_before_prometheus() -> None:
    """`docker compose stop/down`: the proxy drains up to its shutdown grace, waiting for a
    scrape of its last counts, so Docker must wait longer, and Prometheus must still run: compose
    stops a service before the services it depends on."""
    proxy = _services()["proxy"]
    grace = shutdown_grace(proxy["environment"])
    interval = duration_seconds(load_yaml(REPO / "prometheus" / "prometheus.yml")["global"]["scrape_interval"])
    assert duration_seconds(proxy["stop_grace_period"]) > grace > interval, "the drain must span a scrape"
    depends = proxy.get("depends_on", [])
    assert "prometheus" in depends, "Prometheus must outlive the proxy's drain"
    assert "proxy" not in _services()["prometheus"].get("depends_on", [])


def _grafana_files(kind: str) -> list[Path]:
    folder = REPO / "dashboards" / "provisioning" / kind
    return sorted([*folder.glob("*.yml"), *folder.glob("*.yaml")])


def test_grafana_datasource_is_the_compose_prometheus() -> None:
    services = _services()
    grafana = services["grafana"]
    assert _host_path(grafana, "/etc/grafana/provisioning") == REPO / "dashboards" / "provisioning"
    sources = [s for path in _grafana_files("datasources") for s in load_yaml(path).get("datasources", [])]
    prometheus = [s for s in sources if s["type"] == "prometheus"]
    assert prometheus, "no Prometheus datasource provisioned"
    for source in prometheus:
        host, _, port = source["url"].removeprefix("http://").rstrip("/").partition(":")
        assert host == "prometheus" and int(port) in container_ports(services["prometheus"]), source["url"]


def test_grafana_providers_load_every_dashboard_and_its_datasource_exists() -> None:
    grafana = _services()["grafana"]
    dashboards = sorted((REPO / "dashboards").glob("*.json"))
    assert dashboards, "no dashboards/*.json"
    provided: set[Path] = set()
    for path in _grafana_files("dashboards"):
        for provider in load_yaml(path)["providers"]:
            folder = _host_path(grafana, provider["options"]["path"])
            assert folder.is_dir(), f"{provider['name']}: {provider['options']['path']} is no mounted directory"
            provided |= set(folder.rglob("*.json"))
    assert set(dashboards) <= provided, "dashboards no provider loads"
    sources = [s for p in _grafana_files("datasources") for s in load_yaml(p).get("datasources", [])]
    uids, types = {s.get("uid") for s in sources}, {s["type"] for s in sources}
    for dashboard in dashboards:
        doc = json.loads(dashboard.read_text())
        variables = {v["name"]: v for v in doc.get("templating", {}).get("list", [])}
        text = json.dumps(doc)
        for uid in set(re.findall(r'"datasource": \{[^}]*"uid": "([^"]+)"', text)):
            if uid == GRAFANA_BUILTIN:
                continue
            if uid.startswith("$"):  # a datasource variable: it picks among datasources of its type
                variable = variables[uid.strip("${}")]
                assert variable["type"] == "datasource" and variable["query"] in types, (dashboard.name, uid)
            else:
                assert uid in uids, f"{dashboard.name} uses datasource uid {uid!r}, which is not provisioned"


def test_grafana_opens_on_a_provisioned_dashboard() -> None:
    grafana = _services()["grafana"]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert _host_path(grafana, home).parent == REPO / "dashboards"
    assert _host_path(grafana, home).is_file(), home
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
