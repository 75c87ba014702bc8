"""Where things are: the checkout, and the commands the tests run from the venv."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


BIN = Path(sys.executable).parent


PROXY = str(BIN / "sinch-sms-proxy")


SIMULATOR = str(BIN / "sinch-sms-simulator")


PLAN = "/xms/v1/TESTPLAN123"
