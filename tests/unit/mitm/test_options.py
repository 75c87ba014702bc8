"""mitm/options.py: the sinch_* values mitmdump holds back (from --set or config.yaml) become
one line each when they are wrong, whatever their type, never a traceback."""

from __future__ import annotations

import pytest

from sinch_sms_exporter.mitm.options import deferred_problem


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        # config.yaml gives typed values: a string where a number belongs, and the other way round
        ("sinch_metrics_port", "abc", "sinch_metrics_port=abc: not a whole number"),
        ("sinch_body_limit", "10", "sinch_body_limit=10: not a whole number"),
        ("sinch_latency_buckets", 5, "sinch_latency_buckets=5: needs a string"),
        ("sinch_regions", "eu.example.com=eu", "sinch_regions=eu.example.com=eu: needs a list of strings"),
        ("sinch_code_cap", -1, "sinch_code_cap=-1: must be 0 or more"),
        ("sinch_metrics_web_config", 7, "sinch_metrics_web_config=7: needs a string"),
    ],
)
def test_config_yaml_values_of_the_wrong_type_are_one_line(name: str, value: object, problem: str) -> None:
    assert deferred_problem(name, value) == problem


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("sinch_metrics_port", 0),
        ("sinch_regions", ["eu.example.com=eu"]),
        ("sinch_latency_buckets", "0.1,1"),
        ("sinch_metrics_web_config", None),
    ],
)
def test_config_yaml_values_of_the_right_type_pass(name: str, value: object) -> None:
    assert deferred_problem(name, value) is None
