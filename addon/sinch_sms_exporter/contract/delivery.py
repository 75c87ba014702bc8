"""What Sinch's delivery statuses and delivery codes mean, and what to do about each.

Pure data for the runbook, the alert descriptions and the simulator; the label values
themselves are in labels.py. Meanings are ours, written from Sinch's delivery report pages
and SDK enums (docs/architecture.md cites the research brief); codes 413-418 are newer
than the docs' status column, so their usual status is our reading.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

from sinch_sms_exporter.contract.labels import FAILED_DELIVERY_STATUSES


@dataclass(frozen=True, slots=True)
class DeliveryStatusInfo:
    """One delivery status as it appears in the `status` label (lowercase)."""

    status: str
    final: bool
    meaning: str
    advice: str

    @property
    def failed(self) -> bool:
        """Counted as a failure by SinchSmsDeliveryFailureRate."""
        return self.status in FAILED_DELIVERY_STATUSES

    @property
    def anchor(self) -> str:
        return f"delivery-status-{self.status}"


@dataclass(frozen=True, slots=True)
class DeliveryCodeInfo:
    """One delivery code Sinch documents (`code` label, a decimal string)."""

    code: str
    name: str
    status: str  # the status Sinch usually reports with this code
    meaning: str
    advice: str
    mms_only: bool = False

    @property
    def anchor(self) -> str:
        return f"delivery-code-{self.code}"


_STATUSES = (
    DeliveryStatusInfo(
        "queued",
        False,
        "Sinch holds the message and will hand it to an operator at the pace your account allows.",
        "Nothing to do unless messages stay here: a long queue means you send faster than your "
        "account's throughput; spread sends out or ask Sinch for more.",
    ),
    DeliveryStatusInfo(
        "dispatched",
        False,
        "An operator's SMSC accepted the message; the handset has not confirmed it yet.",
        "Wait for the final status. Sinch may skip this step when the final status comes first.",
    ),
    DeliveryStatusInfo(
        "aborted",
        True,
        "Sinch gave up before the message reached an operator (see the code for why).",
        "Read the code: unroutable numbers, a region your account is not provisioned for, "
        "too many parts or a missing default originator are fixed on your side or with Sinch.",
    ),
    DeliveryStatusInfo(
        "cancelled",
        True,
        "The batch was cancelled before the message reached an operator.",
        "Expected after you cancel a scheduled batch; otherwise find who cancels batches.",
    ),
    DeliveryStatusInfo(
        "rejected",
        True,
        "The operator refused the message.",
        "Often the sender ID, the content or the destination network; a share rising with "
        "one campaign points at its sender or text. Ask Sinch support with the batch id.",
    ),
    DeliveryStatusInfo(
        "deleted",
        True,
        "The operator deleted the message, typically for an invalid or opted-out number.",
        "Clean the recipient list: stop sending to these numbers.",
    ),
    DeliveryStatusInfo(
        "delivered",
        True,
        "The handset received the message.",
        "Nothing to do: this is the outcome the failure rate is measured against.",
    ),
    DeliveryStatusInfo(
        "failed",
        True,
        "The operator could not deliver the message.",
        "The code tells whether a retry can help (a temporary failure) or not (an unknown "
        "subscriber). A jump across all codes points at an operator or route outage: tell Sinch.",
    ),
    DeliveryStatusInfo(
        "expired",
        True,
        "The message's validity ran out before it could be delivered (handset off or out of coverage).",
        "Time-critical messages (one-time codes) expire by design; a rising share elsewhere "
        "means delivery is slow: check the route with Sinch, or lengthen the expiry.",
    ),
    DeliveryStatusInfo(
        "unknown",
        True,
        "The operator took the message but sent no receipt Sinch could read.",
        "Not counted as failed: the message probably arrived. Some networks never confirm.",
    ),
)

_CODES = (
    DeliveryCodeInfo(
        "0", "No error", "delivered",
        "The SMPP code for success; with Delivered it is the normal outcome.",
        "Nothing to do. With another status it means the operator gave no reason.",
    ),
    DeliveryCodeInfo(
        "400", "Queued", "queued",
        "Waiting at Sinch to be sent at your account's pace.",
        "Nothing to do unless it lasts: then you send faster than your throughput.",
    ),
    DeliveryCodeInfo(
        "401", "Dispatched", "dispatched",
        "Handed to an operator; waiting for its receipt.",
        "Nothing to do: a final status follows.",
    ),
    DeliveryCodeInfo(
        "402", "Unroutable", "aborted",
        "No route to this number: the operator refused it before trying.",
        "Sending again fails the same way. Check the number's format (E.164) and country; "
        "ask Sinch whether the destination is covered.",
    ),
    DeliveryCodeInfo(
        "403", "Internal error", "aborted",
        "Something failed inside Sinch while handling this message.",
        "Retrying later may work; many at once is a Sinch incident: check their status page.",
    ),
    DeliveryCodeInfo(
        "404", "Temporary failure", "aborted",
        "Delivery failed for a reason that may pass.",
        "Retry the message later.",
    ),
    DeliveryCodeInfo(
        "405", "Unmatched parameter", "aborted",
        "A parameterized body had no value for this recipient.",
        "Fix the batch's `parameters`: give every recipient a value or a default.",
    ),
    DeliveryCodeInfo(
        "406", "Internal expiry", "aborted",
        "The message expired inside Sinch before reaching an operator.",
        "The expiry is too short for the queue: lengthen it or send less at once.",
    ),
    DeliveryCodeInfo(
        "407", "Cancelled", "cancelled",
        "Cancelled before reaching an operator.",
        "Expected after cancelling a batch.",
    ),
    DeliveryCodeInfo(
        "408", "Internal reject", "aborted",
        "Sinch's own checks refused the message.",
        "Sending again fails the same way; ask Sinch support why, with the batch id.",
    ),
    DeliveryCodeInfo(
        "410", "No default originator", "aborted",
        "Sent without a sender and no default originator fits this recipient.",
        "Give a `from`, or have Sinch configure a default originator pool for the destination.",
    ),
    DeliveryCodeInfo(
        "411", "Too many parts", "aborted",
        "The text needs more parts than the batch's `max_number_of_message_parts` allows.",
        "Shorten the text (Unicode halves a part's length) or raise the limit.",
    ),
    DeliveryCodeInfo(
        "412", "Region not provisioned", "aborted",
        "Your account may not send to this recipient's region.",
        "Ask your Sinch account manager to provision the region, or stop sending there.",
    ),
    DeliveryCodeInfo(
        "413", "Account blocked", "aborted",
        "Sinch blocked the account, possibly for lack of credit.",
        "Contact Sinch support and check the balance: nothing will be delivered until then.",
    ),
    DeliveryCodeInfo(
        "414", "Bad media", "failed",
        "Sinch could not fetch the MMS media from its URL.",
        "Make the media URL public and quick to answer with the right Content-Type.",
        mms_only=True,
    ),
    DeliveryCodeInfo(
        "415", "MMS rejected", "rejected",
        "The MMS gateway or the mobile network refused the MMS.",
        "Check size and media types against the carrier's limits; try a smaller file.",
        mms_only=True,
    ),
    DeliveryCodeInfo(
        "416", "MMS not supported", "failed",
        "The destination does not support MMS.",
        "Fall back to SMS (with a link) for this recipient.",
        mms_only=True,
    ),
    DeliveryCodeInfo(
        "417", "MMS unreachable", "failed",
        "The destination network or subscriber could not be reached for the MMS.",
        "Retry later; if it persists, fall back to SMS.",
        mms_only=True,
    ),
    DeliveryCodeInfo(
        "418", "MMS unrecognized", "failed",
        "The handset did not recognize the MMS content.",
        "Use common formats (JPEG, PNG, MP4) and a smaller size.",
        mms_only=True,
    ),
)  # fmt: skip

#: status label → DeliveryStatusInfo, for the ten statuses of labels.DELIVERY_STATUSES.
STATUS_INFO: MappingProxyType[str, DeliveryStatusInfo] = MappingProxyType({s.status: s for s in _STATUSES})
#: code label → DeliveryCodeInfo, for labels.KNOWN_DELIVERY_CODES (0, 400-408, 410-418).
CODE_INFO: MappingProxyType[str, DeliveryCodeInfo] = MappingProxyType({c.code: c for c in _CODES})
