"""A catalogue of CSMS variants with one seeded defect each, for the Central System suites.

``DEFECTS`` says which OCTT cases must catch each; ``test_csms_defects.py`` runs the suites against them
(``--csms-reference csms_defects:CLASS``) and checks that exactly those cases fail. ``Answering`` is the
seam both this catalogue and the legal variants (``csms_variants``) use to answer differently from evhil's
CSMS. Times: seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar

from hil.ocpp.csms import CSMS, DEFAULTS_16, EXPIRED_TOKEN, HarnessOperator, Session
from hil.ocpp.rpc import CALLRESULT, CallError, Handler
from hil.ocpp.scripted import MESSAGE_TIMEOUT_S

Default = Callable[[Session, dict[str, Any]], Any]
"""How a CSMS answers a 1.6 request when a test scripts nothing else: (session, request payload) -> payload."""


class _AnsweringSession(Session):
    """A session whose default answers and answer delays are its CSMS's ``ANSWERS`` and ``DELAYS``."""

    csms: "Answering"

    def handler(self, action: str, default: Callable[[Any, dict[str, Any]], Any] | None) -> Handler:
        inner = super().handler(action, self.csms.ANSWERS.get(action, default))
        delay = self.csms.DELAYS.get(action, self.csms.DELAYS.get("*", 0.0))
        if not delay:
            return inner

        async def late(payload: dict[str, Any]) -> Any:
            answer = await inner(payload)  # computed on receipt (its currentTime too), sent ``delay`` s later
            await asyncio.sleep(delay)
            return answer
        return late


class Answering(CSMS):
    """evhil's CSMS, except that it answers the actions of ``ANSWERS`` its own way and sends the answer to
    an action ``DELAYS[action]`` s after the request arrived (``DELAYS["*"]``: every other action)."""

    ANSWERS: ClassVar[dict[str, Default]] = {}
    DELAYS: ClassVar[dict[str, float]] = {}

    def session(self, cs_id: str) -> Session:
        if cs_id not in self.sessions:
            self.sessions[cs_id] = _AnsweringSession(self, cs_id)
        return self.sessions[cs_id]


def id_tag_info(s: Session, token: str) -> dict[str, Any]:
    """The idTagInfo evhil's CSMS gives ``token`` (its status, and its parent if it has one)."""
    return DEFAULTS_16["Authorize"](s, {"idTag": token})["idTagInfo"]  # type: ignore[no-any-return]


class AcceptsEveryToken(CSMS):
    """Authorises every idTag, whatever its status."""

    def session(self, cs_id: str) -> Session:
        s = super().session(cs_id)
        s.tokens = {}
        s.unknown_token_status = "Accepted"
        return s


class ExpiredAsInvalid(CSMS):
    """Keeps no expired idTags: answers Invalid for an expired one instead of Expired."""

    def session(self, cs_id: str) -> Session:
        s = super().session(cs_id)
        s.tokens[EXPIRED_TOKEN] = "Invalid"
        return s


class StaleClock(CSMS):
    """Answers Heartbeat with a time an hour behind."""

    def session(self, cs_id: str) -> Session:
        s = super().session(cs_id)
        if "Heartbeat" not in s._scripted:
            s.answer("Heartbeat", *[_an_hour_ago] * 100)
        return s


def _an_hour_ago(payload: dict[str, Any]) -> dict[str, Any]:
    stale = datetime.now(timezone.utc) - timedelta(hours=1)
    return {"currentTime": stale.isoformat(timespec="seconds").replace("+00:00", "Z")}


class WrongTagOperator(HarnessOperator):
    async def remote_start(self, connector: int, token: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return await super().remote_start(connector, token[::-1], *args, **kwargs)


class RemoteStartsWithAnotherTag(CSMS):
    """Its operator console sends RemoteStartTransaction with the wrong idTag."""

    def operator(self, cs_id: str) -> HarnessOperator:
        return WrongTagOperator(self.session(cs_id))


class NoHeartbeatInterval(Answering):
    """Accepts the boot with a heartbeat interval of 0 s."""

    ANSWERS = {"BootNotification": lambda s, p: {**DEFAULTS_16["BootNotification"](s, p), "interval": 0}}


class ZeroTransactionIds(Answering):
    """Gives every transaction the transactionId 0."""

    ANSWERS = {"StartTransaction": lambda s, p: {"transactionId": 0, "idTagInfo": id_tag_info(s, p["idTag"])}}


def _count_since_boot(s: Session, p: dict[str, Any]) -> dict[str, Any]:
    calls = s.trace.calls()
    boot = max((k for k, f in enumerate(calls) if f.action == "BootNotification"), default=-1)
    n = sum(1 for f in calls[boot + 1:] if f.action == "StartTransaction")
    return {"transactionId": n, "idTagInfo": id_tag_info(s, p["idTag"])}


class TransactionIdsPerBoot(Answering):
    """Keeps its transaction counter with the charge point's boot: ids restart at 1 after every
    BootNotification."""

    ANSWERS = {"StartTransaction": _count_since_boot}


class TrustsChargePointAuthorization(Answering):
    """Answers Authorize correctly but accepts every StartTransaction, trusting the charge point's own
    (possibly outdated) authorisation."""

    ANSWERS = {"StartTransaction": lambda s, p: {"transactionId": s.next_transaction_id(),
                                                 "idTagInfo": {"status": "Accepted"}}}


def _stop_of_accepted_only(s: Session, p: dict[str, Any]) -> dict[str, Any]:
    accepted = {f.payload.get("transactionId") for f in s.trace.frames if f.direction == "sent"
                and f.message_type == CALLRESULT and f.action == "StartTransaction"
                and f.payload.get("idTagInfo", {}).get("status") == "Accepted"}
    if p["transactionId"] not in accepted:
        raise CallError("PropertyConstraintViolation", f"unknown transaction {p['transactionId']}")
    return DEFAULTS_16["StopTransaction"](s, p)  # type: ignore[no-any-return]


class RejectsStopOfUnknownTransaction(Answering):
    """Records only the transactions it accepted, and answers the StopTransaction of any other with a
    CALLERROR."""

    ANSWERS = {"StopTransaction": _stop_of_accepted_only}


def _no_error_only(s: Session, p: dict[str, Any]) -> dict[str, Any]:
    if p["errorCode"] != "NoError":
        raise CallError("PropertyConstraintViolation", f"errorCode {p['errorCode']} not handled")
    return {}


class RejectsConnectorErrors(Answering):
    """Answers a StatusNotification that reports a connector error (errorCode other than NoError) with a
    CALLERROR."""

    ANSWERS = {"StatusNotification": _no_error_only}


class AcknowledgesMeterValues(Answering):
    """Answers MeterValues with a status field that MeterValues.conf does not have (and does not check its
    own answers against the schema)."""

    ANSWERS = {"MeterValues": lambda s, p: {"status": "Accepted"}}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{**kwargs, "validate": False})


class SlowDataTransfer(Answering):
    """Hands DataTransfer to a vendor back end and answers 2 s after the charge point's message timeout."""

    DELAYS = {"DataTransfer": MESSAGE_TIMEOUT_S + 2.0}


DEFECTS: dict[str, set[str]] = {
    "AcceptsEveryToken": {"TC_023_1_CSMS", "TC_023_2_CSMS", "TC_023_3_CSMS", "TC_037_3_CSMS"},
    "ExpiredAsInvalid": {"TC_023_2_CSMS"},
    "StaleClock": {"TC_001_CSMS"},
    "RemoteStartsWithAnotherTag": {"TC_010_CSMS", "TC_011_1_CSMS", "TC_011_2_CSMS"},
    "NoHeartbeatInterval": {"TC_001_CSMS"},
    "ZeroTransactionIds": {"TC_032_1_CSMS"},
    "TransactionIdsPerBoot": {"TC_032_1_CSMS"},
    "TrustsChargePointAuthorization": {"TC_037_3_CSMS"},
    "RejectsStopOfUnknownTransaction": {"TC_037_3_CSMS"},
    "RejectsConnectorErrors": {"TC_024_CSMS"},
    "AcknowledgesMeterValues": {"TC_039_CSMS"},
    "SlowDataTransfer": {"TC_064_CSMS"},
}
"""Defect class -> the OCTT cases that must fail against it."""
