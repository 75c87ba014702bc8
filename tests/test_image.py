"""The container image (Dockerfile): linted, consistent with the CLI, and its settings run.

No Docker engine runs here, so the image is checked by structure (parsed Dockerfile, hadolint)
and by running what it would run: the proxy with the image's environment and its HEALTHCHECK.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from helpers import PROXY, REPO, free_port


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
