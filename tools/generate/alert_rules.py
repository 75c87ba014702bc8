"""The annotations of prometheus/alerts.yml, rendered from contract.alerts and the catalog.

Only `summary`, `description` and `runbook_url` are written; expressions, thresholds, `for:`,
labels and comments stay as people wrote them (ruamel.yaml's round trip keeps them). The
descriptions are Go templates Prometheus expands: the catalog's advice for the answers behind
an alert, chosen by the firing series' labels where several stand behind it.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Sequence

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.scalarstring import FoldedScalarString

from sinch_sms_exporter.contract import alerts, catalog
from sinch_sms_exporter.contract.alerts import AlertDoc
from sinch_sms_exporter.contract.catalog import CodeInfo, StatusInfo
from tools.generate import causes, runbook_anchor, runbook_link


def _what(info: StatusInfo | CodeInfo) -> str:
    return f"{info.meaning} What to do: {info.tip}"


def _label(info: StatusInfo | CodeInfo) -> str:
    if isinstance(info, CodeInfo):
        return f"{info.status} {info.code}"
    return f"{info.status} {info.reason}"


def _advice(alert: AlertDoc) -> str:
    """The catalog's meaning and tip for the answers behind the alert, as a Go template
    where the firing series' labels choose between several."""
    behind = causes(alert)
    if not behind:
        return f"What to do: {alert.todo}"  # the lead already says what it means
    if len(behind) == 1:
        return _what(behind[0])
    if alert.name == alerts.ALERT_CLIENT_ERROR_BURST:
        return _client_error_advice(behind)
    return " ".join(f"{_label(c)}: {_what(c)}" for c in behind)


def _client_error_advice(behind: Sequence[StatusInfo | CodeInfo]) -> str:
    """One branch per catalog code, then per status without codes (404, 405, 415); a code
    outside the catalog (or none) on a 400/403 gets the generic advice."""
    branches = [(f'eq $labels.code "{c.code}"', _what(c)) for c in behind if isinstance(c, CodeInfo)]
    branches += [
        (f'eq $labels.status "{s.status}"', _what(s))
        for s in behind
        if isinstance(s, StatusInfo) and not catalog.codes_for_status(s.status)
    ]
    template = "".join(
        f"{{{{ {'if' if i == 0 else 'else if'} {cond} }}}}{text}" for i, (cond, text) in enumerate(branches)
    )
    return f"{template}{{{{ else }}}}{alerts.CLIENT_ERROR_FALLBACK}{{{{ end }}}}"


def description(alert: AlertDoc) -> str:
    return " ".join(part for part in (alert.lead, _advice(alert)) if part)


def annotations_of(alert: AlertDoc) -> dict[str, str]:
    return {
        "summary": alert.summary,
        "description": description(alert),
        "runbook_url": runbook_link(runbook_anchor(alert)),
    }


def _folded(text: str, width: int = 96) -> FoldedScalarString:
    """A `>-` block scalar folded at spaces: readable in the file, one line to Prometheus."""
    scalar = FoldedScalarString(text)
    positions, line_start = [], 0
    for line in textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False)[:-1]:
        end = text.index(line, line_start) + len(line)
        if text[end] != " " or text[end + 1 : end + 2] == " ":
            break  # only single spaces fold cleanly
        positions.append(end)
        line_start = end + 1
    scalar.fold_pos = positions
    return scalar


def _yaml() -> YAML:
    yaml = YAML()  # round trip: comments, order and block scalars of the expressions are kept
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096
    yaml.preserve_quotes = True
    return yaml


def _replace_annotations(rule: CommentedMap, rendered: dict[str, str]) -> None:
    """Set a rule's annotations in place, keeping the comment that follows them (ruamel
    attaches the next rule's leading comment and blank line to the last key)."""
    current = rule.get("annotations")
    if not isinstance(current, CommentedMap):
        current = rule["annotations"] = CommentedMap()
    trailing = current.ca.items.get(next(reversed(current)), None) if current else None
    current.fa.set_block_style()
    current.clear()
    current.ca.items.clear()
    for key, value in rendered.items():
        current[key] = _folded(value) if key == "description" else value
    if trailing is not None:
        current.ca.items[next(reversed(current))] = trailing


def sync_alerts(text: str) -> str:
    """alerts.yml with every alerting rule's annotations rendered from contract.alerts."""
    yaml = _yaml()
    doc = yaml.load(text)
    for group in doc["groups"]:
        for rule in group["rules"]:
            if "alert" not in rule:
                continue
            alert = alerts.ALERTS_BY_NAME.get(rule["alert"])
            if alert is None:
                raise ValueError(f"{rule['alert']}: no AlertDoc in contract.alerts.ALERTS")
            _replace_annotations(rule, annotations_of(alert))
    out = io.StringIO()
    yaml.dump(doc, out)
    return out.getvalue()
