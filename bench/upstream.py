"""A fast upstream for the benchmark: Debian's nginx-light with a generated config.

nginx answers from `return` directives (no files, no access log), so the upstream costs a
few microseconds per request and never is the bottleneck. Two answers, same endpoint
template (`batches`; the service plan id segment selects the answer and is never a label):

- `/xms/v1/BENCHOK/batches`: 201 with a small JSON batch (the all-success mix);
- `/xms/v1/BENCHERR/batches`: 403 `{"code":"blocked_account",…}` (the all-error mix: every
  answer a JSON body the addon must parse, its worst case);
- `/sinch/callbacks`: 200 with no body, as a service's callback receiver answers Sinch (the
  callback mix: every request a delivery report the addon must parse).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

SUCCESS_PATH = "/xms/v1/BENCHOK/batches"
ERROR_PATH = "/xms/v1/BENCHERR/batches"
SUCCESS_BODY = (
    '{"id":"01FC66621XXXXX119Z8PMV1QPQ","to":["46700000001"],"from":"12345","canceled":false,'
    '"body":"hello","type":"mt_text","created_at":"2024-01-01T00:00:00.000Z"}'
)
ERROR_BODY = '{"code":"blocked_account","text":"The account is blocked"}'
CALLBACK_PATH = "/sinch/callbacks"
#: A recipient delivery report as Sinch posts it (the SDKs' test vector's shape).
CALLBACK_BODY = (
    '{"at":"2025-01-13T09:22:40.914Z","batch_id":"01JHFFHQ0P99JPPNQPJDV7JTBP","client_reference":"a client '
    'reference","code":0,"operator_status_at":"2025-01-13T09:22:00Z","recipient":"33662162466","status":'
    '"Delivered","type":"recipient_delivery_report_sms"}'
)

_CONFIG = """\
daemon off;
master_process off;
worker_processes 1;
pid {home}/nginx.pid;
error_log {home}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {home}/body;
    proxy_temp_path {home}/proxy;
    fastcgi_temp_path {home}/fastcgi;
    uwsgi_temp_path {home}/uwsgi;
    scgi_temp_path {home}/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    default_type application/json;
    server {{
        listen 127.0.0.1:{port};
        location = {ok} {{ return 201 '{ok_body}'; }}
        location = {err} {{ return 403 '{err_body}'; }}
        location = {callback} {{ return 200; }}
        location / {{ return 404; }}
    }}
}}
"""


def nginx_binary() -> str:
    path = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if path is None:
        raise SystemExit("bench: nginx is not installed (Debian package nginx-light: apt-get install nginx-light)")
    return path


def write_config(home: Path, port: int) -> Path:
    """nginx.conf for one foreground, single-process nginx under `home` on 127.0.0.1:`port`."""
    home.mkdir(parents=True, exist_ok=True)
    config = home / "nginx.conf"
    config.write_text(
        _CONFIG.format(
            home=home,
            port=port,
            ok=SUCCESS_PATH,
            err=ERROR_PATH,
            callback=CALLBACK_PATH,
            ok_body=SUCCESS_BODY,
            err_body=ERROR_BODY,
        )
    )
    return config


def start_nginx(home: Path, port: int, cpus: str | None = None) -> subprocess.Popen:
    """Start nginx in the foreground (not a daemon: it ends with the benchmark)."""
    config = write_config(home, port)
    argv = [nginx_binary(), "-p", str(home), "-c", str(config), "-e", str(home / "error.log")]
    if cpus:
        argv = ["taskset", "-c", cpus, *argv]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=open(home / "stderr.log", "wb"))
