"""Legal but unusual Central Systems: each answers the way OCPP 1.6 allows and evhil's CSMS does not, so the
Central System suite must pass against every one (``test_csms_variants.py`` runs the cases in ``LEGAL``,
the ones its unusualness touches most; the whole suite runs with ``--csms-reference csms_variants:CLASS``).
Times: seconds.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from typing import Any

from csms_defects import Answering, id_tag_info
from hil.ocpp.csms import DEFAULTS_16, Session
from hil.ocpp.scripted import MESSAGE_TIMEOUT_S


class LargeTransactionIds(Answering):
    """Numbers transactions with large ids in no order (distinct, below 2^31), as a CSMS drawing them from a
    shared database sequence or at random does (OCPP 1.6 §6.46: an integer the Central System supplies)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.draw = random.Random(16)
        self.given: set[int] = set()

    def large_id(self) -> int:
        while (tx := self.draw.randrange(10**9, 2**31)) in self.given:
            pass
        self.given.add(tx)
        return tx

    ANSWERS = {"StartTransaction": lambda s, p: {"transactionId": s.csms.large_id(),  # type: ignore[attr-defined]
                                                 "idTagInfo": id_tag_info(s, p["idTag"])}}


class TerseAnswers(Answering):
    """Leaves out what it may: StopTransaction.conf without idTagInfo even when the request names an idTag
    (OCPP 1.6 §6.50: optional), and a heartbeat interval of a day (§4.6: over JSON heartbeats are not
    mandatory, one a day is advised)."""

    ANSWERS = {"StopTransaction": lambda s, p: {},
               "BootNotification": lambda s, p: {**DEFAULTS_16["BootNotification"](s, p), "interval": 86400}}


def _local_time() -> str:
    """The current time as RFC 3339 allows it too: a +02:00 offset and milliseconds."""
    return datetime.now(timezone(timedelta(hours=2))).isoformat(timespec="milliseconds")


def _full_id_tag_info(s: Session, token: str) -> dict[str, Any]:
    """idTagInfo with every optional field: an expiry date (past for an expired idTag, else in a year) and a
    parent idTag."""
    info = id_tag_info(s, token)
    expiry = timedelta(days=-1 if info["status"] == "Expired" else 365)
    return {**info, "parentIdTag": info.get("parentIdTag", "EVHILGROUP"),
            "expiryDate": (datetime.now(timezone(timedelta(hours=2))) + expiry).isoformat(timespec="milliseconds")}


class VerboseAnswers(Answering):
    """Adds every optional field: idTagInfo with expiryDate and parentIdTag in Authorize, StartTransaction and
    StopTransaction answers (OCPP 1.6 §7.27), and writes its times with a +02:00 offset and milliseconds (§3.14,
    §3.15: receivers must handle both)."""

    ANSWERS = {
        "BootNotification": lambda s, p: {**DEFAULTS_16["BootNotification"](s, p), "currentTime": _local_time()},
        "Heartbeat": lambda s, p: {"currentTime": _local_time()},
        "Authorize": lambda s, p: {"idTagInfo": _full_id_tag_info(s, p["idTag"])},
        "StartTransaction": lambda s, p: {"transactionId": s.next_transaction_id(),
                                          "idTagInfo": _full_id_tag_info(s, p["idTag"])},
        "StopTransaction": lambda s, p: {"idTagInfo": _full_id_tag_info(s, p["idTag"])} if "idTag" in p else {},
    }


class SlowButInTime(Answering):
    """Answers every request half a second late, and BootNotification and Heartbeat 6 s late with the time
    it read when the request arrived: later than a check of currentTime against the moment the answer
    arrives (± 5 s) allows, 4 s inside the charge point's message timeout (OCPP-J 1.6 §4.1.1)."""

    DELAYS = {"*": 0.5, "BootNotification": MESSAGE_TIMEOUT_S - 4.0, "Heartbeat": MESSAGE_TIMEOUT_S - 4.0}


class NullForEmptyAnswers(Answering):
    """Writes an answer without fields as ``null`` instead of ``{}`` (OCPP-J 1.6 §4.2.2 allows both):
    StatusNotification, MeterValues, and StopTransaction without an idTag."""

    ANSWERS = {"StatusNotification": lambda s, p: None, "MeterValues": lambda s, p: None,
               "StopTransaction": lambda s, p: DEFAULTS_16["StopTransaction"](s, p) if "idTag" in p else None}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{**kwargs, "validate": False})


LEGAL: dict[str, set[str]] = {
    "LargeTransactionIds": {"TC_012_CSMS", "TC_032_1_CSMS", "TC_039_CSMS", "TC_057_CSMS"},
    "TerseAnswers": {"TC_001_CSMS", "TC_032_1_CSMS", "TC_039_CSMS"},
    "VerboseAnswers": {"TC_001_CSMS", "TC_003_CSMS", "TC_023_2_CSMS", "TC_039_CSMS"},
    "SlowButInTime": {"TC_001_CSMS", "TC_064_CSMS"},
    "NullForEmptyAnswers": {"TC_003_CSMS", "TC_005_1_CSMS", "TC_039_CSMS"},
}
"""Legal CSMS class -> the OCTT cases its unusualness touches most (each must pass against it)."""
