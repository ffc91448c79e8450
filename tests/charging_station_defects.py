"""A catalogue of OCPP 2.0.1 charging station emulators with one seeded defect each.

Each class changes one behaviour of the reference station the way real stations get it wrong. ``DEFECTS``
says which OCTT cases must catch it; ``test_ocpp201_defects.py`` runs the suites against each
(``--cs-emulator charging_station_defects:CLASS``) and checks that those cases fail naming the step.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hil.ocpp import smart_charging as sc
from hil.ocpp.charging_station import ChargingStation, Evse
from hil.ocpp.device_model import Variable

from charging_station_variants import energy_in_kwh


class ForgetsOfflineFlag(ChargingStation):
    """Never marks TransactionEvents created while offline with ``offline = true``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        enqueue = self.uplink.enqueue

        def without_flag(action: str, payload: dict[str, Any], on_result: Any = None) -> Any:
            payload.pop("offline", None)
            return enqueue(action, payload, on_result)
        self.uplink.enqueue = without_flag  # type: ignore[method-assign]


class BootReasonAlwaysPowerUp(ChargingStation):
    """Reports every boot as PowerUp, a reset included."""

    def _prepare_boot(self, reason: str) -> None:
        super()._prepare_boot("PowerUp")


class WritesReadOnlyVariables(ChargingStation):
    """SetVariables changes read-only variables too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for v in self.dm:
            if v.mutability == "ReadOnly":
                v.mutability, v.constant = "ReadWrite", False


class AcceptsAnyValue(ChargingStation):
    """SetVariables does not check a value against the variable's data type."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for v in self.dm:
            v.accepts = lambda value: True  # type: ignore[method-assign]


class ReportInOnePartNumberedOne(ChargingStation):
    """Sends the base report as NotifyReport parts numbered from 1."""

    async def _try_call(self, action: str, payload: dict[str, Any]) -> dict[str, Any] | None:
        if action == "NotifyReport":
            payload = dict(payload, seqNo=payload["seqNo"] + 1)
        return await super()._try_call(action, payload)


class ForgetsAvailabilityOnReboot(ChargingStation):
    """Every EVSE is operative again after a reboot."""

    def _prepare_boot(self, reason: str) -> None:
        for e in self.evses.values():
            e.operative = True
        super()._prepare_boot(reason)


class DiscardsAfterCallError(ChargingStation):
    """Drops a transaction message on the first CALLERROR instead of retrying it."""

    def _retry(self) -> Any:
        retry = super()._retry()
        retry.attempts = 1
        return retry


class QueueInvisibleToStatus(ChargingStation):
    """GetTransactionStatus always says nothing is queued."""

    async def _on_get_transaction_status(self, p: dict[str, Any]) -> dict[str, Any]:
        answer = await super()._on_get_transaction_status(p)
        return dict(answer, messagesInQueue=False)


class IgnoresAuthorizationCache(ChargingStation):
    """Asks the CSMS for every token, cached or not (LocalPreAuthorize has no effect)."""

    def flag(self, component: str, name: str) -> bool:
        if (component, name) == ("AuthCtrlr", "LocalPreAuthorize"):
            return False
        return super().flag(component, name)


class StopsForUnknownTransaction(ChargingStation):
    """Accepts RequestStopTransaction for a transaction id it does not know."""

    async def _on_request_stop_transaction(self, p: dict[str, Any]) -> dict[str, Any]:
        answer = await super()._on_request_stop_transaction(p)
        return {"status": "Accepted"} if answer["status"] == "Rejected" else answer


class NoEVConnectionTimeout(ChargingStation):
    """Keeps an authorisation waiting for the cable forever."""

    def _connection_timeout(self, e: Evse) -> None:
        return None


class AnyTokenStops(ChargingStation):
    """Any accepted token stops a transaction, whatever its group."""

    async def _on_token(self, e: Evse, token: dict[str, str]) -> None:
        tx = e.transaction
        if tx is not None and e.token is not None:
            info = await self.authorize(token)
            if info.get("status") == "Accepted":
                self._deauthorize(e, "StopAuthorized", "Local", token)
            return
        await super()._on_token(e, token)


class SecondBootTriggerAccepted(ChargingStation):
    """Accepts TriggerMessage BootNotification while already registered and boots again."""

    async def _on_trigger_message(self, p: dict[str, Any]) -> dict[str, Any]:
        if p["requestedMessage"] == "BootNotification" and self.boot_status == "Accepted":
            self._soon(self._try_call("BootNotification", {"chargingStation": dict(self.identity),
                                                           "reason": "Triggered"}))
            return {"status": "Accepted"}
        return await super()._on_trigger_message(p)


class IgnoresBackOff(ChargingStation):
    """Reconnects after one second whatever RetryBackOffWaitMinimum says."""

    def _variable_changed(self, v: Variable) -> None:
        super()._variable_changed(v)
        self.uplink.backoff.wait_minimum = 0.3
        self.uplink.backoff.repeat_times = 0



class AcceptsAnyTxProfile(ChargingStation):
    """Accepts a TxProfile on an EVSE whatever its transactionId, with no transaction running too."""

    async def _on_set_charging_profile(self, p: dict[str, Any]) -> dict[str, Any]:
        raw = p["chargingProfile"]
        if raw["chargingProfilePurpose"] != "TxProfile" or p["evseId"] not in self.evses:
            return await super()._on_set_charging_profile(p)
        profile = sc.profile_from_ocpp(raw, "2.0.1")
        for old in self.profiles.install(profile, p["evseId"]):
            self.raw_profiles.pop(old.id, None)
        self.raw_profiles[profile.id] = (p["evseId"], dict(raw))
        return {"status": "Accepted"}


class ClearsOnlyById(ChargingStation):
    """ClearChargingProfile ignores chargingProfileCriteria: only a chargingProfileId clears anything."""

    async def _on_clear_charging_profile(self, p: dict[str, Any]) -> dict[str, Any]:
        if p.get("chargingProfileId") is None:
            return {"status": "Unknown"}
        return await super()._on_clear_charging_profile(p)


class ReportsEveryProfile(ChargingStation):
    """GetChargingProfiles reports every installed profile, whatever evseId and criterion ask for."""

    async def _on_get_charging_profiles(self, p: dict[str, Any]) -> dict[str, Any]:
        return await super()._on_get_charging_profiles({"requestId": p["requestId"], "chargingProfile": {}})


class ForgetsProfilesOnReboot(ChargingStation):
    """Keeps its charging profiles in RAM only."""

    def _prepare_boot(self, reason: str) -> None:
        self.profiles.clear()
        self.raw_profiles.clear()
        super()._prepare_boot(reason)


class IgnoresValidityPeriod(ChargingStation):
    """Applies a charging profile from the moment it is set until it is cleared, ignoring validFrom/validTo."""

    async def _on_set_charging_profile(self, p: dict[str, Any]) -> dict[str, Any]:
        raw = {k: v for k, v in p["chargingProfile"].items() if k not in ("validFrom", "validTo")}
        return await super()._on_set_charging_profile(dict(p, chargingProfile=raw))


class RemoteStartProfileWithoutTransaction(ChargingStation):
    """Keeps a RequestStartTransaction's TxProfile without the transactionId of the transaction it started."""

    async def _install_for_transaction(self, e: Evse, profile: dict[str, Any]) -> None:
        await super()._install_for_transaction(e, profile)
        if profile["id"] in self.raw_profiles:
            evse, raw = self.raw_profiles[profile["id"]]
            self.raw_profiles[profile["id"]] = (evse, {k: v for k, v in raw.items() if k != "transactionId"})


class DoesNotEnforceProfiles(ChargingStation):
    """Accepts, stores, reports and composes charging profiles, but never limits the power stage."""

    def limit(self, evse: int) -> float | None:
        return None


class LimitFixedAtTransactionStart(ChargingStation):
    """Works out the charging limit once, when the transaction starts; profiles set later never reach the
    power stage."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fixed: dict[str, float | None] = {}

    def limit(self, evse: int) -> float | None:
        tx = self.evses[evse].transaction
        if tx is None:
            return None
        if tx.id not in self._fixed:
            self._fixed[tx.id] = super().limit(evse)
        return self._fixed[tx.id]


class BillsZeroEnergy(ChargingStation):
    """Reports the register reading of the transaction's start again as its Transaction.End reading."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._begin: dict[int, float] = {}

    def meter_value(self, e: Evse, context: str, measurands: list[str], when: datetime | None = None) -> dict[str, Any]:
        mv = super().meter_value(e, context, measurands, when)
        for sv in mv["sampledValue"]:
            if sv["measurand"] == "Energy.Active.Import.Register":
                if context == "Transaction.Begin":
                    self._begin[e.id] = sv["value"]
                elif context == "Transaction.End":
                    sv["value"] = self._begin.get(e.id, sv["value"])
        return mv


class EnergyKilowattHoursLabelledWh(ChargingStation):
    """Sends its energy register in kWh but declares the unit Wh."""

    def meter_value(self, e: Evse, context: str, measurands: list[str], when: datetime | None = None) -> dict[str, Any]:
        return energy_in_kwh(super().meter_value(e, context, measurands, when), {"unit": "Wh"})


class HeartbeatIntervalReadBackOnly(ChargingStation):
    """Stores a HeartbeatInterval set over SetVariables (it reads back) but keeps beating at the interval of the
    BootNotificationResponse."""

    _beat: int | None = None

    async def _boot(self) -> None:
        await super()._boot()
        self._beat = super().number("OCPPCommCtrlr", "HeartbeatInterval")

    def number(self, component: str, name: str, instance: str | None = None) -> int:
        if (component, name) == ("OCPPCommCtrlr", "HeartbeatInterval") and self._beat is not None:
            return self._beat
        return super().number(component, name, instance)


class TxUpdatedIntervalReadBackOnly(ChargingStation):
    """Stores a SampledDataCtrlr.TxUpdatedInterval set over SetVariables but samples at its factory interval."""

    def number(self, component: str, name: str, instance: str | None = None) -> int:
        if (component, name) == ("SampledDataCtrlr", "TxUpdatedInterval"):
            return 60
        return super().number(component, name, instance)


class IdleAlignedValuesNeedSendDuringIdle(ChargingStation):
    """Reads AlignedDataCtrlr.SendDuringIdle the wrong way round: sends no clock-aligned MeterValues while idle
    unless it is true."""

    async def _try_call(self, action: str, payload: dict[str, Any]) -> dict[str, Any] | None:
        if action == "MeterValues" and payload["meterValue"][0]["sampledValue"][0].get("context") == "Sample.Clock" \
                and not self.flag("AlignedDataCtrlr", "SendDuringIdle"):
            return None
        return await super()._try_call(action, payload)


class UnavailableDuringTransaction(ChargingStation):
    """Answers ChangeAvailability Inoperative Scheduled during a transaction, but reports the EVSE Unavailable
    at once."""

    def connector_status(self, e: Evse) -> str:
        if e.pending_operative is False and not e.faulted:
            return "Unavailable"
        return super().connector_status(e)

    async def _on_change_availability(self, p: dict[str, Any]) -> dict[str, Any]:
        answer = await super()._on_change_availability(p)
        for e in self.evses.values():
            self._soon(self._report(e))
        return answer


class UsesDisabledLocalList(ChargingStation):
    """Authorises from its local list even when LocalAuthListCtrlr.Enabled is false."""

    def _local_info(self, token: str) -> tuple[dict[str, Any] | None, str]:
        info, source = super()._local_info(token)
        if info is None and token in self.local_list:
            return dict(self.local_list[token]), "list"
        return info, source


class ListVersionWhileDisabled(ChargingStation):
    """Answers GetLocalListVersion with the list's version also while the list is disabled."""

    async def _on_get_local_list_version(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"versionNumber": self.local_list_version}


DEFECTS: dict[str, set[str]] = {
    "ForgetsOfflineFlag": {"TC_E_40_CS", "TC_E_43_CS", "TC_E_44_CS"},
    "BootReasonAlwaysPowerUp": {"TC_B_21_CS", "TC_B_22_CS", "TC_B_23_CS"},
    "WritesReadOnlyVariables": {"TC_B_39_CS"},
    "AcceptsAnyValue": {"TC_B_11_CS"},
    "ReportInOnePartNumberedOne": {"TC_B_12_CS", "TC_B_13_CS", "TC_B_53_CS"},
    "ForgetsAvailabilityOnReboot": {"TC_B_23_CS"},
    "DiscardsAfterCallError": {"TC_E_50_CS", "TC_E_51_CS"},
    "QueueInvisibleToStatus": {"TC_E_29_CS", "TC_E_31_CS", "TC_E_33_CS"},
    "IgnoresAuthorizationCache": {"TC_C_08_CS", "TC_C_13_CS", "TC_C_32_CS", "TC_C_41_CS"},
    "StopsForUnknownTransaction": {"TC_F_09_CS"},
    "NoEVConnectionTimeout": {"TC_E_39_CS", "TC_F_04_CS"},
    "AnyTokenStops": {"TC_C_04_CS"},
    "SecondBootTriggerAccepted": {"TC_F_26_CS"},
    "IgnoresBackOff": {"TC_B_57_CS"},
    "AcceptsAnyTxProfile": {"TC_K_02_CS", "TC_K_16_CS"},
    "ClearsOnlyById": {"TC_K_06_CS", "TC_K_09_CS", "TC_K_24_CS"},
    "ReportsEveryProfile": {"TC_K_29_CS", "TC_K_30_CS", "TC_K_32_CS", "TC_K_33_CS", "TC_K_34_CS", "TC_K_35_CS",
                            "TC_K_36_CS"},
    "ForgetsProfilesOnReboot": {"TC_K_13_CS"},
    "IgnoresValidityPeriod": {"TC_K_21_CS", "TC_K_22_CS"},
    "RemoteStartProfileWithoutTransaction": {"TC_K_37_CS"},
    "DoesNotEnforceProfiles": {"TC_K_09_CS", "TC_K_28_CS", "TC_K_37_CS", "TC_K_60_CS"},
    "LimitFixedAtTransactionStart": {"TC_K_28_CS", "TC_K_60_CS"},
    "BillsZeroEnergy": {"TC_J_10_CS"},
    "EnergyKilowattHoursLabelledWh": {"TC_J_10_CS"},
    "HeartbeatIntervalReadBackOnly": {"TC_B_01_CS"},
    "TxUpdatedIntervalReadBackOnly": {"TC_J_09_CS", "TC_E_29_CS", "TC_E_33_CS", "TC_E_40_CS"},
    "IdleAlignedValuesNeedSendDuringIdle": {"TC_J_01_CS"},
    "UnavailableDuringTransaction": {"TC_G_11_CS"},
    "UsesDisabledLocalList": {"TC_C_02_CS"},
    "ListVersionWhileDisabled": {"TC_C_02_CS"},
}
"""Defect -> the OCTT cases that must fail against it."""
