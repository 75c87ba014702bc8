"""The Sinch SMS REST API error catalog: every status and code the API documents.

Pure data, one source of truth: classification keeps these codes verbatim, the simulator
answers them, the runbook and the alert descriptions are rendered from them. Written from
Sinch's "HTTP Status Codes for the SMS REST API" page and the Sinch community article on
HTTP response statuses, with Sinch's SDKs' and older docs' codes (see CHANGELOG.md).

Imports nothing from mitmproxy or prometheus_client on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from sinch_sms_exporter.contract import alerts


@dataclass(frozen=True, slots=True)
class StatusInfo:
    """One HTTP status the Sinch SMS API documents."""

    status: int
    reason: str
    meaning: str
    tip: str
    #: The body the API sends: "json_code" ({"code","text"}), "resource", "text", or "none".
    body: Literal["json_code", "resource", "none", "text"]
    alert: str | None = None

    @property
    def anchor(self) -> str:
        """Runbook section id (GitHub renders `## <a id=…>` anchors verbatim)."""
        return f"status-{self.status}"


@dataclass(frozen=True, slots=True)
class CodeInfo:
    """One `code` value of a 400 or 403 answer's JSON body."""

    code: str
    status: int
    meaning: str
    tip: str
    #: Example `text` the API puts beside the code (the simulator sends it).
    text: str
    alert: str | None = None

    @property
    def anchor(self) -> str:
        return f"code-{self.code}"


_STATUSES = (
    StatusInfo(
        200,
        "OK",
        "The request was successful.",
        "Nothing to do.",
        body="resource",
    ),
    StatusInfo(
        201,
        "Created",
        "The POST request was successful and a new resource (a batch, a group) was created.",
        "Nothing to do.",
        body="resource",
    ),
    StatusInfo(
        202,
        "Accepted",
        "The request was accepted for processing; the answer has no body (delivery feedback "
        "on `POST /batches/{batch_id}/delivery_feedback` answers so).",
        "Nothing to do.",
        body="none",
    ),
    StatusInfo(
        400,
        "Bad Request",
        "The request does not conform to the API: its syntax, a field's format or a constraint "
        "is wrong. The JSON body's `code` says which.",
        "Look at the `code` (below) and at the `text` field of the answer, which names the offending field.",
        body="json_code",
        alert=alerts.ALERT_CLIENT_ERROR_BURST,
    ),
    StatusInfo(
        401,
        "Unauthorized",
        "The authentication token is invalid for this service plan, or an OAuth 2.0 access token has expired.",
        "Check in the Sinch Build Dashboard that the token matches the service plan ID (or "
        "project ID) in the URL. With OAuth 2.0, make sure the service refreshes its access "
        "token before it expires.",
        body="text",
        alert=alerts.ALERT_UNAUTHORIZED,
    ),
    StatusInfo(
        403,
        "Forbidden",
        "The request is valid but cannot be performed, for example because a referenced "
        "resource does not exist or the account is blocked. The JSON body's `code` says why.",
        "Look at the `code` (below): `blocked_account` needs your account manager, the others point at the request.",
        body="json_code",
        alert=alerts.ALERT_CLIENT_ERROR_BURST,
    ),
    StatusInfo(
        404,
        "Not Found",
        "The path is invalid, or no resource exists with the given ID (not ready yet, or "
        "removed by the retention policy). The API sends no body.",
        "Check the endpoint path; wait until the resource is ready and retry; check whether "
        "the data was cleaned up by the retention policy.",
        body="none",
        alert=alerts.ALERT_CLIENT_ERROR_BURST,
    ),
    StatusInfo(
        405,
        "Method Not Allowed",
        "The endpoint path is valid but the HTTP method is wrong for it (for example DELETE on an inbound).",
        "Check that the HTTP method matches what the endpoint does.",
        body="text",
        alert=alerts.ALERT_CLIENT_ERROR_BURST,
    ),
    StatusInfo(
        415,
        "Unsupported Media Type",
        "The Content-Type header is missing or unsupported; the SMS API uses application/json.",
        "Send `Content-Type: application/json` with every request that has a body.",
        body="text",
        alert=alerts.ALERT_CLIENT_ERROR_BURST,
    ),
    StatusInfo(
        429,
        "Too Many Requests",
        "The user or path has too many outstanding requests.",
        "Space out requests and send at a slower rate; retry with backoff. If the load is "
        "legitimate, ask Sinch about your throughput limits.",
        body="text",
        alert=alerts.ALERT_RATE_LIMITED,
    ),
    StatusInfo(
        500,
        "Internal Server Error",
        "An unexpected error occurred inside Sinch and the request was not processed.",
        "Retry the request. If 500s persist, contact your Sinch account manager.",
        body="text",
        alert=alerts.ALERT_SERVER_ERROR_SPIKE,
    ),
    StatusInfo(
        503,
        "Service Unavailable",
        "Sinch cannot perform the request right now, most likely because a required subsystem is unavailable.",
        "Retry later with backoff and contact your Sinch account manager.",
        body="text",
        alert=alerts.ALERT_SERVER_ERROR_SPIKE,
    ),
)

_CODES = (
    CodeInfo(
        "syntax_constraint_violation",
        400,
        "The request body does not fulfil all constraints of the API: a required field is "
        "missing, the body is over the maximum length, or the message expires in the past.",
        "The `text` field of the answer names the constraint; required fields are marked in the API reference.",
        "Missing required field: to.",
        alert=alerts.ALERT_CLIENT_ERROR_BURST,
    ),
    CodeInfo(
        "syntax_invalid_json",
        400,
        "The JSON in the request is invalid or does not conform to the API specification.",
        "Validate the JSON the service builds (a JSON validator or linter pinpoints the syntax "
        "error); look for string concatenation instead of a JSON encoder.",
        "Unexpected character at position 12.",
        alert=alerts.ALERT_CLIENT_ERROR_BURST,
    ),
    CodeInfo(
        "syntax_invalid_parameter_format",
        400,
        "The format of a field value is invalid, for example a phone number (MSISDN) without its country or area code.",
        "The `text` field of the answer names the field; send phone numbers in E.164 format.",
        "Invalid format of parameter: to.",
        alert=alerts.ALERT_CLIENT_ERROR_BURST,
    ),
    CodeInfo(
        "blocked_account",
        403,
        "The Sinch account has been blocked: no message will be sent until it is unblocked.",
        "Reach out to your Sinch account manager at once.",
        "The account is blocked.",
        alert=alerts.ALERT_ACCOUNT_BLOCKED,
    ),
    CodeInfo(
        "illegal_number_type",
        403,
        "A phone number (MSISDN) of a type that is not allowed in the chosen region was used.",
        "Send to a different MSISDN; check which number types your region allows.",
        "Illegal number type for the region.",
        alert=alerts.ALERT_CLIENT_ERROR_BURST,
    ),
    CodeInfo(
        "missing_callback_url",
        403,
        "A delivery report callback was requested but no callback URL is set: delivery reports are lost.",
        "Set a callback URL for the service plan in the Sinch dashboard, or pass `callback_url` "
        "in the request body (it applies to that batch only).",
        "Requesting delivery report without any callback URL.",
        alert=alerts.ALERT_MISSING_CALLBACK_URL,
    ),
    CodeInfo(
        "unknown_group",
        403,
        "A referenced group ID is unknown to the API: the ID is invalid or the group was deleted.",
        "Check that the group ID in the request belongs to an existing group.",
        "Unknown group.",
        alert=alerts.ALERT_CLIENT_ERROR_BURST,
    ),
    CodeInfo(
        "unknown_campaign",
        403,
        "The campaign ID sent with the batch does not belong to the sender number (`from`) of the batch.",
        "Check that the sender number is registered to the campaign the service names, or send "
        "from a number of that campaign.",
        "The campaign ID does not match the specified originator.",
        alert=alerts.ALERT_CLIENT_ERROR_BURST,
    ),
    CodeInfo(
        "batch_already_dispatched",
        403,
        "An update of a batch came after the batch had been dispatched: messages already on "
        "their way cannot be changed.",
        "Change scheduled batches (`send_at` in the future) only; for a batch already sent, send a new one instead.",
        "The batch has already been dispatched.",
        alert=alerts.ALERT_CLIENT_ERROR_BURST,
    ),
    # The two conflict_* codes come from Sinch's legacy Java SDK, which lists them without an
    # HTTP status. 403 is our choice: Sinch's status table has no 409, its 403 is "valid but
    # cannot be performed" (the family of batch_already_dispatched, the closest documented
    # case), and 400 is for malformed requests, which these are not. The meaning says so.
    CodeInfo(
        "conflict_group_name",
        403,
        "A group was created with a name another group already has. (Sinch does not document "
        "the HTTP status of this code; 403 is the exporter's assumption.)",
        "Reuse the existing group (list groups by name) or pick a unique name.",
        "A group with this name already exists.",
        alert=alerts.ALERT_CLIENT_ERROR_BURST,
    ),
    CodeInfo(
        "conflict_send_at",
        403,
        "A batch was cancelled after its messages had already been sent out: there is nothing "
        "left to cancel. (Sinch does not document the HTTP status of this code; 403 is the "
        "exporter's assumption.)",
        "Cancel only batches scheduled for later (`send_at`); check whether the service "
        "cancels batches it meant to keep.",
        "The batch has already been sent.",
        alert=alerts.ALERT_CLIENT_ERROR_BURST,
    ),
)

#: status → StatusInfo, for every status the Sinch SMS API documents.
STATUSES: MappingProxyType[int, StatusInfo] = MappingProxyType({s.status: s for s in _STATUSES})
#: code → CodeInfo, for every 400/403 code the Sinch SMS API documents.
CODES: MappingProxyType[str, CodeInfo] = MappingProxyType({c.code: c for c in _CODES})


def codes_for_status(status: int) -> tuple[CodeInfo, ...]:
    """The documented codes of one status (empty for statuses without codes)."""
    return tuple(c for c in _CODES if c.status == status)
