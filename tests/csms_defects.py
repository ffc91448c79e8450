"""A catalogue of CSMS variants with one seeded defect each, for the Central System suites.

``DEFECTS`` says which OCTT cases must catch each; ``test_csms_defects.py`` runs the suites against them
(``--csms-reference csms_defects:CLASS``) and checks that exactly those cases fail.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from hil.ocpp.csms import CSMS, HarnessOperator, Session


class AcceptsEveryToken(CSMS):
    """Authorises every idTag, whatever its status."""

    def session(self, cs_id: str) -> Session:
        s = super().session(cs_id)
        s.tokens = {}
        s.unknown_token_status = "Accepted"
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
    async def remote_start(self, connector: int, token: str) -> None:
        await super().remote_start(connector, token[::-1])


class RemoteStartsWithAnotherTag(CSMS):
    """Its operator console sends RemoteStartTransaction with the wrong idTag."""

    def operator(self, cs_id: str) -> HarnessOperator:
        return WrongTagOperator(self.session(cs_id))


DEFECTS: dict[str, set[str]] = {
    "AcceptsEveryToken": {"TC_023_1_CSMS", "TC_023_2_CSMS", "TC_023_3_CSMS", "TC_037_3_CSMS"},
    "StaleClock": {"TC_001_CSMS"},
    "RemoteStartsWithAnotherTag": {"TC_010_CSMS", "TC_011_1_CSMS", "TC_011_2_CSMS"},
}
"""Defect class -> the OCTT cases that must fail against it."""
