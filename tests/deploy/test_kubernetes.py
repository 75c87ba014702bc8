"""The Kubernetes sidecar example (deploy/kubernetes/): structure, agreement with the image and
the alert rules, and the PrometheusRule generated from prometheus/alerts.yml + recording.yml.

No cluster runs here: the manifests are parsed and checked field by field; the rule groups
go through the real promtool; the sidecar's environment runs the real proxy for its probes.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from sinch_sms_exporter import cli, settings
from tests.helpers.client import http
from tests.helpers.deploy_files import (
    KUBERNETES,
    alert_rules_job,
    duration_seconds,
    final_stage,
    load_yaml,
    load_yaml_all,
    project_version,
    shutdown_grace,
)
from tests.helpers.paths import PROXY, REPO
from tests.helpers.processes import free_port, running, start, wait_for_port
from tests.helpers.prometheus import system_tool
from tools.generate import __main__ as generate
from tools.generate import prometheusrule


def _one(kind: str) -> dict[str, Any]:
    docs = [d for path in sorted(KUBERNETES.glob("*.yaml")) for d in load_yaml_all(path) if d.get("kind") == kind]
    assert len(docs) == 1, f"expected one {kind}, found {len(docs)}"
    return docs[0]


def _pod() -> dict[str, Any]:
    return _one("Deployment")["spec"]["template"]


def _containers() -> dict[str, dict[str, Any]]:
    spec = _pod()["spec"]
    return {c["name"]: c for c in [*spec.get("initContainers", []), *spec["containers"]]}


def _proxy() -> dict[str, Any]:
    (proxy,) = [c for c in _containers().values() if c["image"].split("/")[-1].startswith("sinch-sms-exporter:")]
    return proxy


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", [])}


def _effective_env() -> dict[str, str]:
    """What the proxy container sees: the image's ENV, then the manifest's."""
    image = {k: v for k, v in final_stage().env().items() if k.startswith(settings.ENV_PREFIX)}
    return {**image, **_env(_proxy())}


def test_prometheusrule_is_generated_from_the_rule_files_and_up_to_date() -> None:
    written = (REPO / prometheusrule.OUTPUT).read_text()
    assert written == prometheusrule.render(REPO), "deploy/kubernetes/prometheusrule.yaml is stale: run make generate"
    resource = _one("PrometheusRule")
    assert resource["apiVersion"] == "monitoring.coreos.com/v1"
    sources = [g for name in ("alerts.yml", "recording.yml") for g in load_yaml(REPO / "prometheus" / name)["groups"]]
    assert resource["spec"]["groups"] == sources  # identical groups, rule for rule, field for field
    names = [group["name"] for group in sources]
    assert len(set(names)) == len(names), "group names must be unique within one PrometheusRule"
    alerts = {r["alert"] for g in resource["spec"]["groups"] for r in g["rules"] if "alert" in r}
    assert {"SinchSmsAccountBlocked", "SinchSmsExporterDown"} <= alerts


def test_prometheusrule_groups_pass_promtool(tmp_path: Path) -> None:
    path = tmp_path / "groups.yml"
    with open(path, "w") as out:
        YAML(typ="safe").dump({"groups": _one("PrometheusRule")["spec"]["groups"]}, out)
    result = subprocess.run([system_tool("promtool"), "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_generator_check_mode_notices_a_stale_resource(tmp_path: Path) -> None:
    (tmp_path / "prometheus").mkdir()
    (tmp_path / "deploy" / "kubernetes").mkdir(parents=True)
    for name in prometheusrule.RULE_FILES:
        (tmp_path / name).write_text((REPO / name).read_text())
    assert generate.main(["--root", str(tmp_path), "--check"]) == 1  # not written yet
    assert prometheusrule.OUTPUT in generate.stale(tmp_path)
    assert generate.main(["--root", str(tmp_path)]) == 0
    assert generate.main(["--root", str(tmp_path), "--check"]) == 0
    alerts = tmp_path / "prometheus" / "alerts.yml"
    alerts.write_text(alerts.read_text().replace("for: 5m", "for: 6m", 1))
    assert generate.main(["--root", str(tmp_path), "--check"]) == 1
    assert generate.stale(tmp_path) == [prometheusrule.OUTPUT]  # only the copy of the rules is behind


def test_deployment_selects_its_pods_and_runs_the_projects_image() -> None:
    deployment = _one("Deployment")
    assert deployment["apiVersion"] == "apps/v1"
    labels = _pod()["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert _proxy()["image"].endswith(f"sinch-sms-exporter:{project_version()}")
    assert len(_containers()) == 2, "the service and the proxy beside it"


def test_proxy_ports_and_probes_match_the_image() -> None:
    proxy, env = _proxy(), _effective_env()
    ports = {p["name"]: p["containerPort"] for p in proxy["ports"]}
    assert ports["sinch-metrics"] == int(env["SINCH_PROXY_METRICS_PORT"]) == settings.DEFAULT_METRICS_PORT
    assert ports["sinch-proxy"] == int(env["SINCH_PROXY_LISTEN_PORT"])
    assert set(ports.values()) == final_stage().exposed_ports()
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        check = proxy[probe]["httpGet"]
        assert check["path"] == "/healthz", probe
        assert ports.get(check["port"], check["port"]) == ports["sinch-metrics"], probe
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= proxy["resources"][kind].keys(), kind


def test_proxy_is_unprivileged_read_only_and_keeps_its_confdir_writable() -> None:
    proxy, pod = _proxy(), _pod()["spec"]
    security = proxy["securityContext"]
    uid, _, gid = final_stage().all("USER")[0].partition(":")
    assert security["runAsNonRoot"] is True
    assert (security["runAsUser"], security["runAsGroup"]) == (int(uid), int(gid))
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    mounts = {m["mountPath"]: m["name"] for m in proxy["volumeMounts"]}
    confdir = _effective_env()["SINCH_PROXY_CONFDIR"]
    assert confdir in mounts, "the only path mitmproxy writes must be a volume"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts[confdir]]


def _seconds(value: str) -> float:
    return duration_seconds(str(value)) if not str(value).isdigit() else float(value)


def test_proxy_is_a_native_sidecar_that_outlasts_its_drain() -> None:
    """Kubernetes 1.29+: an init container with restartPolicy Always starts before the service
    (once its startupProbe passes) and gets SIGTERM only after the service exited, so it needs
    no preStop. The pod's grace period covers the drain; liveness cannot kill it mid-drain."""
    spec, proxy = _pod()["spec"], _proxy()
    sidecars = [c for c in spec.get("initContainers", []) if c.get("restartPolicy") == "Always"]
    assert sidecars == [proxy], "the proxy is the pod's one native sidecar"
    assert proxy not in spec["containers"]
    assert "lifecycle" not in proxy, "a native sidecar stops after the service: no preStop sleep"
    assert "startupProbe" in proxy, "the service waits for the proxy's startupProbe"
    grace = shutdown_grace(_env(proxy))
    assert grace == float(_env(proxy)["SINCH_PROXY_SHUTDOWN_GRACE"])
    interval = _seconds(_one("PodMonitor")["spec"]["podMetricsEndpoints"][0]["interval"])
    assert grace > interval, "the drain must span one scrape"
    # the service's own shutdown comes first, inside the same period
    assert spec["terminationGracePeriodSeconds"] >= grace + 10
    # the kubelet kills after failureThreshold failures in a row: (failureThreshold - 1) periods
    # after the first failing probe, which may come right as the drain starts
    liveness = proxy["livenessProbe"]
    assert (liveness["failureThreshold"] - 1) * liveness["periodSeconds"] > grace, "liveness would kill the drain"
    assert spec["terminationGracePeriodSeconds"] > grace, "the pod's grace period covers the drain"


def test_classic_form_for_older_clusters_is_documented_with_its_prestop() -> None:
    """docs/deploy.md keeps the pre-1.29 form (both containers in `containers`): a preStop sleep
    keeps the proxy serving while the service stops, and the grace period covers both."""
    text = (REPO / "docs" / "deploy.md").read_text()
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "preStop" in b]
    assert len(blocks) == 1, "one classic-form example"
    pod = YAML(typ="safe").load(blocks[0])
    (proxy,) = [c for c in pod["containers"] if c["image"].split("/")[-1].startswith("sinch-sms-exporter:")]
    assert "initContainers" not in pod and "restartPolicy" not in proxy
    sleep = proxy["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep"
    grace = shutdown_grace(_env(proxy))
    assert pod["terminationGracePeriodSeconds"] > float(sleep[1]) + grace
    assert pod["containers"][0] is proxy, "listed first: the kubelet starts containers in order"


def test_service_reaches_the_proxy_over_loopback() -> None:
    env = _effective_env()
    assert env["SINCH_PROXY_LISTEN_HOST"] == "127.0.0.1", "only the pod's containers may use the sidecar"
    flags = {opt for action in cli.build_parser()._actions for opt in action.option_strings}
    for name in _env(_proxy()):
        assert "--" + name.removeprefix(settings.ENV_PREFIX).lower().replace("_", "-") in flags, name
    urls = cli.parse_upstreams(env["SINCH_PROXY_UPSTREAM"].split(","), [], int(env["SINCH_PROXY_LISTEN_PORT"]))
    (service,) = [c for c in _containers().values() if c["name"] != _proxy()["name"]]
    assert _env(service)["SINCH_BASE_URL"] == f"http://127.0.0.1:{urls[0].listen_port}"
    assert urls[0].url == "https://us.sms.api.sinch.com"


def test_podmonitor_scrapes_the_sidecar_under_the_alert_rules_job() -> None:
    monitor = _one("PodMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= _pod()["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] in {p["name"] for p in _proxy()["ports"]}
    assert endpoint["path"] == "/metrics"
    job = [r for r in endpoint["relabelings"] if r.get("targetLabel") == "job"]
    assert job == [{"action": "replace", "targetLabel": "job", "replacement": alert_rules_job()}]


def test_kustomization_lists_every_manifest() -> None:
    listed = load_yaml(KUBERNETES / "kustomization.yaml")["resources"]
    present = sorted(p.name for p in KUBERNETES.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == present


@pytest.mark.e2e
def test_sidecar_environment_starts_and_answers_its_probes(tmp_path: Path) -> None:
    """The container's effective environment (image ENV + manifest env; ports moved to free
    ones, the confdir to a temporary directory) starts the real proxy on loopback."""
    listen, metrics = free_port(), free_port()
    env = {**_effective_env(), "SINCH_PROXY_LISTEN_PORT": str(listen), "SINCH_PROXY_METRICS_PORT": str(metrics),
           "SINCH_PROXY_CONFDIR": str(tmp_path / "confdir")}  # fmt: skip
    proc = start([PROXY], tmp_path / "proxy.log", env)
    with running(proc):
        wait_for_port(metrics, proc=proc.popen)
        wait_for_port(listen, proc=proc.popen)
        probe = _proxy()["readinessProbe"]["httpGet"]["path"]
        status, _, body = http("GET", f"http://127.0.0.1:{metrics}{probe}")
        assert (status, body) == (200, b"ok\n")
        assert f"listening at 127.0.0.1:{listen}" in proc.log(), proc.log()
