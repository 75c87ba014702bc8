"""Regenerate every generated file, or say which are stale: the one entry point.

    python -m tools.generate            # write them (make generate)
    python -m tools.generate --check    # exit 1, naming them, when any is stale (make check)

Everything is rendered in memory first, in order (the PrometheusRule copies the annotations
just rendered into alerts.yml), then compared or written: a failure writes nothing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from tools.generate import alert_rules, dashboards, prometheusrule, runbook

RUNBOOK = "docs/runbook.md"
ALERTS = "prometheus/alerts.yml"
#: Read, never written: the generated files are derived from these (and from the code).
SOURCES = (ALERTS, "prometheus/recording.yml")


def render_all(root: Path) -> dict[str, str]:
    """Every generated file under `root` (path → content), in the order they depend on each other."""
    out = {RUNBOOK: runbook.render(), ALERTS: alert_rules.sync_alerts((root / ALERTS).read_text())}
    out[prometheusrule.OUTPUT] = prometheusrule.render(root, {ALERTS: out[ALERTS]})
    out |= {f"{dashboards.DIRECTORY}/{name}": text for name, text in dashboards.render_all().items()}
    return out


def stale(root: Path, rendered: dict[str, str] | None = None) -> list[str]:
    """The generated files under `root` that differ from what would be generated (or are missing)."""
    rendered = render_all(root) if rendered is None else rendered
    return [path for path, text in rendered.items() if not (root / path).is_file() or (root / path).read_text() != text]


def write(root: Path) -> list[str]:
    """Regenerate every file under `root`; returns those that changed."""
    rendered = render_all(root)
    changed = stale(root, rendered)
    for path in changed:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(rendered[path])
    return changed


def default_root() -> Path:
    """The checkout this module lives in."""
    return Path(__file__).resolve().parents[2]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.generate", description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=None, help="repository root (default: this checkout)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when a generated file is stale")
    args = parser.parse_args(argv)
    root = args.root or default_root()
    missing = [name for name in SOURCES if not (root / name).is_file()]
    if missing:
        parser.error(f"{root / missing[0]} not found: pass --root (the repository root)")
    try:
        if args.check:
            outdated = stale(root)
            if outdated:
                print(f"stale: {', '.join(outdated)}; run `make generate`", file=sys.stderr)
                return 1
            return 0
        changed = write(root)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("updated: " + (", ".join(changed) or "nothing (already current)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
