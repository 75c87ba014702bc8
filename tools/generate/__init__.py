"""Generated files of the repository, rendered from code: `python -m tools.generate` (make generate).

What is generated, from what, in this order (later files read earlier ones):

    docs/runbook.md                        contract.catalog, .delivery, .alerts    (runbook.py)
    prometheus/alerts.yml  (annotations)   contract.catalog + contract.alerts      (alert_rules.py)
    deploy/kubernetes/prometheusrule.yaml  prometheus/alerts.yml + recording.yml   (prometheusrule.py)
    dashboards/*.json                      dashboards.py (grafana-foundation-sdk)

This module holds what they share: where the runbook is published, and which catalog answers
stand behind an alert.
"""

from __future__ import annotations

from sinch_sms_exporter.contract import catalog
from sinch_sms_exporter.contract.alerts import AlertDoc
from sinch_sms_exporter.contract.catalog import CodeInfo, StatusInfo

#: Where the rendered runbook is published: every alert's `runbook_url` and every dashboard link
#: starts with it. A fork changes this one line and runs `make generate` (docs/alerts.md explains).
RUNBOOK_URL = "https://github.com/sinch-sms-exporter/sinch-sms-exporter/blob/main/docs/runbook.md"


def runbook_link(anchor: str = "") -> str:
    """The runbook's URL, opened at a section when `anchor` is given."""
    return f"{RUNBOOK_URL}#{anchor}" if anchor else RUNBOOK_URL


def causes(alert: AlertDoc) -> tuple[StatusInfo | CodeInfo, ...]:
    """The catalog entries whose answers make this alert fire."""
    statuses = tuple(s for s in catalog.STATUSES.values() if s.alert == alert.name)
    codes = tuple(c for c in catalog.CODES.values() if c.alert == alert.name)
    return statuses + codes


def runbook_anchor(alert: AlertDoc) -> str:
    """The section an alert's runbook_url opens: the one catalog entry behind it, if one."""
    behind = causes(alert)
    return behind[0].anchor if len(behind) == 1 else alert.anchor
