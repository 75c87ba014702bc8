"""Request path → endpoint template; upstream host → region; method → bounded label.

Labels must never carry ids, phone numbers or the service plan id, and must stay few:
every function here maps unbounded input onto a small, fixed set of values.
Pure functions, no mitmproxy or prometheus_client imports.
"""

from __future__ import annotations

import re

from sinch_sms_exporter.contract.labels import ENDPOINT_TEMPLATES, KNOWN_METHODS, OTHER

#: The Sinch SMS API's regional hosts in both forms: `eu.sms.api.sinch.com` (service-plan
#: tokens) and `zt.eu.sms.api.sinch.com` (project/OAuth auth, the official SDKs' default), both
#: → `eu`. The OAuth token host `auth.sinch.com` does not match: it carries client secrets and
#: is never decrypted. Host patterns are matched against the whole host name (fullmatch), so
#: they carry no anchors.
SINCH_HOST_PATTERN = r"(?:zt\.)?(?:(?P<region>[a-z0-9-]{1,32})\.)?sms\.api\.sinch\.com"
SINCH_HOST_RE = re.compile(SINCH_HOST_PATTERN, re.IGNORECASE)


def _compile(templates: tuple[str, ...]) -> dict[tuple[int, str], list[tuple[tuple[str | None, ...], str]]]:
    """Index templates by (segment count, first segment); literal-rich templates first.

    A segment of None is a placeholder (`{batch_id}`): it matches any non-empty segment.
    Sorting by the number of placeholders makes `batches/dry_run` win over `batches/{batch_id}`.
    """
    index: dict[tuple[int, str], list[tuple[tuple[str | None, ...], str]]] = {}
    for template in templates:
        segments = tuple(None if s.startswith("{") else s for s in template.split("/"))
        index.setdefault((len(segments), template.split("/")[0]), []).append((segments, template))
    for candidates in index.values():
        candidates.sort(key=lambda c: sum(s is None for s in c[0]))
    return index


_INDEX = _compile(ENDPOINT_TEMPLATES)


#: Templates without an id segment: the paths that reach them are few (one per plan id).
_ID_FREE = frozenset(t for t in ENDPOINT_TEMPLATES if "{" not in t)
#: endpoint_of's memory of id-free paths (`/xms/v1/{plan}/batches`, the call nearly every
#: request is): one dict lookup instead of a split and a match. Paths with ids, phone numbers
#: or a query are never kept; it stops growing at _MEMO_SIZE (plan ids are client-controlled).
_memo: dict[str, str] = {}
_MEMO_SIZE = 256


def endpoint_of(path: str) -> str:
    """Map a request path (`/xms/v1/{plan}/batches/01FC…?x=y`) to its endpoint template.

    Only `/xms/v1/{service_plan_id}/…` paths of the contract's endpoints are recognised;
    the plan id and every id segment are dropped. One trailing slash is tolerated.
    Anything else is `other`.
    """
    endpoint = _memo.get(path)
    if endpoint is None:
        endpoint = _match(path)
        if endpoint in _ID_FREE and len(_memo) < _MEMO_SIZE and "?" not in path:
            _memo[path] = endpoint
    return endpoint


def _match(path: str) -> str:
    query = path.find("?")
    if query >= 0:
        path = path[:query]
    parts = path.split("/")
    # ["", "xms", "v1", plan, *rest]
    if len(parts) < 5 or parts[0] or parts[1] != "xms" or parts[2] != "v1" or not parts[3]:
        return OTHER
    rest = parts[4:]
    if len(rest) > 1 and not rest[-1]:
        rest.pop()
    candidates = _INDEX.get((len(rest), rest[0]))
    if candidates is None or not all(rest):
        return OTHER
    for segments, template in candidates:
        for want, got in zip(segments, rest, strict=True):
            if want is not None and want != got:
                break
        else:
            return template
    return OTHER


def method_label(method: str) -> str:
    """The HTTP method if it is a standard one, else `other` (methods are client-controlled)."""
    return method if method in KNOWN_METHODS else OTHER


def region_of_host(host: str) -> str | None:
    """`eu.sms.api.sinch.com` and `zt.eu.sms.api.sinch.com` → `eu`; `sms.api.sinch.com` → `us`;
    other hosts → None."""
    match = SINCH_HOST_RE.fullmatch(host)
    if match is None:
        return None
    return (match.group("region") or "us").lower()


def host_pattern(pattern: str) -> str:
    """A host regex without the anchors users habitually add (`^…$`): patterns here are
    always matched against the whole host name."""
    if pattern.startswith("^"):
        pattern = pattern[1:]
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1]
    return pattern


def allow_hosts_pattern(pattern: str) -> str:
    """mitmproxy's allow_hosts matches `host:port` strings; this turns a host pattern into one."""
    return rf"^(?:{host_pattern(pattern)}):\d+$"
