"""Entry point for plain mitmproxy: `mitmdump -s <path of this file> --mode reverse:…`.

mitmproxy loads a script as a standalone module, so this file imports the package
absolutely; run from a source checkout (not pip-installed), it puts the source root
(`addon/`) on sys.path first. `sinch-sms-proxy --print-addon-path` prints this file's path.
"""

import sys
from pathlib import Path

try:
    from sinch_sms_exporter.mitm.addon import SinchSmsExporter
except ImportError:  # a source checkout: addon/ is the source root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from sinch_sms_exporter.mitm.addon import SinchSmsExporter

addons = [SinchSmsExporter()]
