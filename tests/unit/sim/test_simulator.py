"""The Sinch simulator itself: what it answers for paths outside the API, under a scenario or
not, and the `malformed` fault. (The proxy's tests use the simulator; these check that what it
answers is what the real API answers, so the demo's and the benchmarks' numbers mean something.)"""

from __future__ import annotations

import collections
import json
import socket

import pytest

from sinch_sms_exporter.contract import labels
from sinch_sms_exporter.sim import simulator
from tests.helpers.client import http
from tests.helpers.paths import PLAN
from tests.helpers.processes import running, start_simulator


def test_unknown_paths_choose_404_whatever_the_scenario() -> None:
    sim = simulator.Simulator(simulator.DEMO_SCENARIO, seed=7)
    assert {sim.choose(None, labels.OTHER) for _ in range(2000)} == {"404"}
    # the same scenario on a real endpoint does pick other answers (so the line above is a real check)
    picked = collections.Counter(sim.choose(None, "batches") for _ in range(2000))
    assert len(picked) > 10 and picked["ok"] > 1000 and "404" in picked


def test_an_explicit_choice_overrides_the_unknown_path_404() -> None:
    sim = simulator.Simulator(simulator.DEMO_SCENARIO, seed=7)
    assert sim.choose("403:blocked_account", labels.OTHER) == "403:blocked_account"
    assert simulator.Simulator().choose(None, labels.OTHER) == "404"
    assert simulator.Simulator().choose(None, "batches") == "ok"


def _status(url: str) -> int | str:
    """The status of one POST, or "error": the demo scenario drops a connection now and then."""
    try:
        return http("POST", url, b"{}")[0]
    except OSError:
        return "error"


@pytest.mark.e2e
def test_demo_scenario_answers_unknown_paths_404_with_no_body(tmp_path) -> None:
    with running(start_simulator(tmp_path, "--scenario", "demo", "--seed", "3")) as sim:
        base = f"http://127.0.0.1:{sim.ports['http']}"
        unknown = [http("POST", f"{base}{PLAN}/no_such_endpoint", b"{}") for _ in range(120)]
        unknown += [http("GET", f"{base}/not/the/api") for _ in range(30)]
        known = collections.Counter(_status(f"{base}{PLAN}/batches") for _ in range(150))
        forced = http("GET", f"{base}{PLAN}/no_such_endpoint", headers={"X-Sinch-Sim": "403:blocked_account"})
    assert {status for status, _, _ in unknown} == {404}
    assert {body for _, _, body in unknown} == {b""}
    assert not any("Content-Type" in headers for _, headers, _ in unknown)
    assert all(headers["Content-Length"] == "0" for _, headers, _ in unknown)
    # the scenario is on: a known endpoint gets successes and errors
    assert known[201] > 75 and len(known) > 2, known
    assert forced[0] == 403 and b'"code": "blocked_account"' in forced[2]


@pytest.mark.e2e
def test_malformed_answers_a_line_that_is_not_http_then_closes(tmp_path) -> None:
    with running(start_simulator(tmp_path)) as sim, socket.create_connection(("127.0.0.1", sim.ports["http"])) as conn:
        conn.settimeout(5)
        conn.sendall(f"GET {PLAN}/batches HTTP/1.1\r\nHost: x\r\nX-Sinch-Sim: malformed\r\n\r\n".encode())
        received = b""
        while chunk := conn.recv(4096):
            received += chunk
    assert received == b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n\r\n"


def test_lists_are_paged_as_the_api_pages() -> None:
    pages = [
        json.loads(simulator.parse_answer("ok", "GET", "groups", {"page": [str(p)], "page_size": ["2"]}).body)
        for p in range(3)
    ]
    assert [(p["count"], p["page"], p["page_size"], len(p["groups"])) for p in pages] == [
        (simulator.LIST_TOTAL, 0, 2, 2),
        (simulator.LIST_TOTAL, 1, 1, 1),
        (simulator.LIST_TOTAL, 2, 0, 0),
    ]


def test_delivery_feedback_is_accepted_with_no_body() -> None:
    answer = simulator.parse_answer("ok", "POST", "batches/{batch_id}/delivery_feedback")
    assert (answer.status, answer.body) == (202, b"")


def test_expired_carries_the_challenge_the_sdks_renew_on() -> None:
    answer = simulator.parse_answer("expired", "POST", "batches")
    assert answer.status == 401 and answer.body == b""
    assert ("WWW-Authenticate", 'Bearer error="invalid_token", error_description="expired"') in answer.headers


def test_the_script_answers_before_the_scenario_but_after_the_path() -> None:
    sim = simulator.Simulator(simulator.DEMO_SCENARIO, seed=7)
    sim.script.extend(["429", "403:blocked_account"])
    assert sim.choose(None, labels.OTHER) == "404"
    assert [sim.choose(None, "batches") for _ in range(2)] == ["429", "403:blocked_account"]
    assert sim.choose("ok", "batches") == "ok" and not sim.script


@pytest.mark.e2e
def test_the_token_endpoint_answers_basic_credentials_only(tmp_path) -> None:
    with running(start_simulator(tmp_path)) as sim:
        base = f"http://127.0.0.1:{sim.ports['http']}"
        basic = {"Authorization": "Basic S0VZSUQ6U0VDUkVU", "Content-Type": "application/x-www-form-urlencoded"}
        status, _, body = http("POST", f"{base}/oauth2/token", b"grant_type=client_credentials", basic)
        assert status == 200
        assert set(json.loads(body)) == {"access_token", "expires_in", "scope", "token_type"}
        assert http("POST", f"{base}/oauth2/token", b"grant_type=client_credentials")[0] == 401
