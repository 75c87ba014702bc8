"""routes: paths → endpoint templates, hosts → regions, methods → bounded labels."""

import re

import pytest

from sinch_sms_exporter.classify import routes
from sinch_sms_exporter.contract import labels

PLAN = "/xms/v1/a1b2c3d4e5f6"


@pytest.mark.parametrize(
    ("path", "endpoint"),
    [
        (f"{PLAN}/batches", "batches"),
        (f"{PLAN}/batches/", "batches"),
        (f"{PLAN}/batches?page=2&page_size=30", "batches"),
        (f"{PLAN}/batches/dry_run", "batches/dry_run"),
        (f"{PLAN}/batches/dry_run?per_recipient=true", "batches/dry_run"),
        (f"{PLAN}/batches/01FC66621XXXXX119Z8PMV1QPQ", "batches/{batch_id}"),
        (f"{PLAN}/batches/01FC66621XXXXX119Z8PMV1QPQ/delivery_feedback", "batches/{batch_id}/delivery_feedback"),
        (f"{PLAN}/batches/01FC66621XXXXX119Z8PMV1QPQ/delivery_report", "batches/{batch_id}/delivery_report"),
        (
            f"{PLAN}/batches/01FC66621XXXXX119Z8PMV1QPQ/delivery_report/+15551231234",
            "batches/{batch_id}/delivery_report/{recipient}",
        ),
        (f"{PLAN}/delivery_reports?start_date=2026-01-01", "delivery_reports"),
        (f"{PLAN}/groups", "groups"),
        (f"{PLAN}/groups/01FC66621VHDBN119Z8PMV1QPU", "groups/{group_id}"),
        (f"{PLAN}/groups/01FC66621VHDBN119Z8PMV1QPU/members", "groups/{group_id}/members"),
        (f"{PLAN}/inbounds", "inbounds"),
        (f"{PLAN}/inbounds/01FC66621XXXXX119Z8PMV1INB", "inbounds/{inbound_id}"),
        # Not of the contract: never a raw path.
        ("/", "other"),
        ("", "other"),
        ("/xms/v1/", "other"),
        ("/xms/v1/plan", "other"),
        ("/xms/v1//batches", "other"),
        ("/xms/v2/plan/batches", "other"),
        ("/foo/xms/v1/plan/batches", "other"),
        (f"{PLAN}/batches//delivery_report", "other"),
        (f"{PLAN}/batches/id/delivery_report/+1555/extra", "other"),
        (f"{PLAN}/batches/id/unknown", "other"),
        (f"{PLAN}/Batches", "other"),
        (f"{PLAN}/groups/id/members/+15551231234", "other"),
        (f"{PLAN}/secret-token-in-path", "other"),
        (f"{PLAN}/batches/{'x' * 10_000}", "batches/{batch_id}"),
    ],
)
def test_endpoint_templates(path: str, endpoint: str) -> None:
    assert routes.endpoint_of(path) == endpoint


def test_every_template_is_reachable_and_labels_are_bounded() -> None:
    # Build a concrete path for every template and map it back.
    for template in labels.ENDPOINT_TEMPLATES:
        concrete = "/".join("X1" if s.startswith("{") else s for s in template.split("/"))
        assert routes.endpoint_of(f"{PLAN}/{concrete}") == template
    assert labels.OTHER in labels.ENDPOINT_LABELS
    assert len(labels.ENDPOINT_LABELS) == len(labels.ENDPOINT_TEMPLATES) + 1


def test_the_plan_id_never_reaches_the_label() -> None:
    for template in labels.ENDPOINT_LABELS:
        assert "a1b2c3d4e5f6" not in template


@pytest.mark.parametrize(
    ("host", "region"),
    [
        ("us.sms.api.sinch.com", "us"),
        ("eu.sms.api.sinch.com", "eu"),
        ("EU.SMS.API.SINCH.COM", "eu"),
        ("au.sms.api.sinch.com", "au"),
        ("sms.api.sinch.com", "us"),
        ("zt.eu.sms.api.sinch.com", "eu"),  # project (OAuth) auth: the SDKs' default host
        ("zt.us.sms.api.sinch.com", "us"),
        ("ZT.EU.SMS.API.SINCH.COM", "eu"),
        ("auth.sinch.com", None),  # the OAuth token host: never decrypted (client secrets)
        ("zt.eu.sms.api.sinch.com.evil.com", None),
        ("xx.zt.eu.sms.api.sinch.com", None),
        ("evil.com", None),
        ("us.sms.api.sinch.com.evil.com", None),
        ("a.b.sms.api.sinch.com", None),
        ("127.0.0.1", None),
    ],
)
def test_region_of_host(host: str, region: str | None) -> None:
    assert routes.region_of_host(host) == region
    # Forward mode decrypts by the same pattern (mitmproxy matches host:port), so a host
    # gets a region exactly when it would be decrypted and counted.
    pattern = routes.allow_hosts_pattern(routes.SINCH_HOST_PATTERN)
    decrypted = re.search(pattern, f"{host}:443", re.IGNORECASE) is not None  # as mitmproxy compiles it
    assert decrypted is (region is not None)


@pytest.mark.parametrize(
    ("pattern", "host", "allowed"),
    [
        (routes.SINCH_HOST_PATTERN, "eu.sms.api.sinch.com:443", True),
        (routes.SINCH_HOST_PATTERN, "sms.api.sinch.com:8443", True),
        (routes.SINCH_HOST_PATTERN, "zt.eu.sms.api.sinch.com:443", True),
        (routes.SINCH_HOST_PATTERN, "auth.sinch.com:443", False),
        (routes.SINCH_HOST_PATTERN, "eu.sms.api.sinch.com.evil.com:443", False),
        (routes.SINCH_HOST_PATTERN, "api.example.com:443", False),
        (r"^127\.0\.0\.1$", "127.0.0.1:8443", True),  # habitual anchors are tolerated
        (r"^127\.0\.0\.1$", "localhost:8443", False),
        (r"price\$", "price$:80", True),  # an escaped dollar is not an anchor
    ],
)
def test_allow_hosts_patterns_match_host_and_port(pattern: str, host: str, allowed: bool) -> None:
    # mitmproxy matches allow_hosts against "host:port"; decryption hinges on this.
    assert (re.search(routes.allow_hosts_pattern(pattern), host) is not None) is allowed


@pytest.mark.parametrize(
    ("method", "label"),
    [("GET", "GET"), ("POST", "POST"), ("DELETE", "DELETE"), ("PUT", "PUT"), ("get", "other"), ("BREW", "other")],
)
def test_method_label(method: str, label: str) -> None:
    assert routes.method_label(method) == label


def test_help_names_both_host_forms_and_the_untouched_auth_host() -> None:
    """`--help` tells forward-mode users which hosts are decrypted and which never are."""
    from sinch_sms_exporter import cli

    text = " ".join(cli.build_parser().format_help().split())
    assert "zt.{region}.sms.api.sinch.com" in text and "{region}.sms.api.sinch.com" in text
    assert "auth.sinch.com" in text
    assert not re.fullmatch(routes.host_pattern(routes.SINCH_HOST_PATTERN), "auth.sinch.com")
