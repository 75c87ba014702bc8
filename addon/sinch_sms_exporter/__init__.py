"""sinch-sms-exporter: a mitmproxy sidecar that turns Sinch SMS API answers into Prometheus metrics."""

from importlib import metadata

try:
    __version__ = metadata.version("sinch-sms-exporter")
except metadata.PackageNotFoundError:  # a source checkout that is not installed
    __version__ = "0.0.0+source"
