"""A catalogue of OCPP 1.6 charge point emulators with one seeded defect each.

Each class changes one behaviour of the reference emulator the way real chargers get it wrong.
``DEFECTS`` says which OCTT cases must catch it; ``test_ocpp_defects.py`` runs the suites against each
(``--cp-emulator charge_point_defects:CLASS``) and checks that exactly those cases fail, naming the step.
"""

from __future__ import annotations

from typing import Any

from hil.ocpp.charge_point import ChargePoint, Connector, Transaction


class NoStationStatus(ChargePoint):
    """After boot, reports its connectors but not connectorId 0 (the charge point as a whole)."""

    async def _send_status(self, c: Connector) -> None:
        if c.id == 0:
            c.reported = c.status
            return
        await super()._send_status(c)


class IgnoresHeartbeatInterval(ChargePoint):
    """Keeps its own heartbeat interval instead of the one the BootNotification answer sets."""

    async def _boot(self) -> None:
        await super()._boot()
        self.config["HeartbeatInterval"].value = "30"


class LosesOfflineMeterValues(ChargePoint):
    """Drops transaction meter values taken while offline instead of queueing them."""

    def _enqueue_for(self, tx: Any, action: str, payload: dict[str, Any]) -> None:
        if action == "MeterValues" and not self.uplink.online:
            return
        super()._enqueue_for(tx, action, payload)


class IgnoresProfileLimit(ChargePoint):
    """Accepts and reports charging profiles but charges at full current whatever they say."""

    def limit(self, connector: int) -> float | None:
        return None


class BootsOnReconnect(ChargePoint):
    """Sends BootNotification again after every reconnection, not only after a reboot."""

    async def _on_connected(self, first: bool) -> None:
        await super()._on_connected(True)


class KeepsChargingOnEVDisconnect(ChargePoint):
    """Ignores StopTransactionOnEVSideDisconnect=true: an EV-side unplug only suspends the transaction."""

    def cfg_bool(self, key: str) -> bool:
        if key == "StopTransactionOnEVSideDisconnect":
            return False
        return super().cfg_bool(key)


class NoRemoteStartBeforePlugIn(ChargePoint):
    """Rejects RemoteStartTransaction unless the cable is already plugged in."""

    async def _on_remote_start_transaction(self, p: dict[str, Any]) -> dict[str, Any]:
        c = self.connectors.get(p.get("connectorId", 1))
        if c is not None and c.outlet is not None and not c.outlet.plugged_in:
            return {"status": "Rejected"}
        return await super()._on_remote_start_transaction(p)


class IgnoresConnectionTimeOut(ChargePoint):
    """An authorisation waiting for the cable never times out."""

    def cfg_int(self, key: str) -> int:
        if key == "ConnectionTimeOut":
            return 10**6
        return super().cfg_int(key)


class RejectsUnknownKey(ChargePoint):
    """Answers ChangeConfiguration of an unknown key with Rejected instead of NotSupported."""

    async def _on_change_configuration(self, p: dict[str, Any]) -> dict[str, Any]:
        if p["key"] not in self.config:
            return {"status": "Rejected"}
        return await super()._on_change_configuration(p)


class AcceptsStaleLocalList(ChargePoint):
    """Applies a differential local list update whatever its version (no VersionMismatch)."""

    async def _on_send_local_list(self, p: dict[str, Any]) -> dict[str, Any]:
        if p["updateType"] == "Differential":
            self.local_list_version = min(self.local_list_version, p["listVersion"] - 1)
        return await super()._on_send_local_list(p)


class CompositeIgnoresStationMax(ChargePoint):
    """Leaves the ChargePointMaxProfile out of the composite schedule and of the applied limit."""

    async def _on_get_composite_schedule(self, p: dict[str, Any]) -> dict[str, Any]:
        saved = [q for q in self.profiles if q.purpose.name == "STATION_MAX"]
        for q in saved:
            self.profiles.clear(id=q.id)
        try:
            return await super()._on_get_composite_schedule(p)
        finally:
            for q in saved:
                self.profiles.install(q)


class ForgetsUnavailableOnReboot(ChargePoint):
    """Comes back Operative after a reset although the connector was set Inoperative."""

    async def _reset(self, kind: str) -> None:
        for c in self.connectors.values():
            c.operative = True
        await super()._reset(kind)


class SuspendsInsteadOfStopping(ChargePoint):
    """Ignores StopTransactionOnInvalidId=true: an idTag rejected after an offline start only suspends."""

    async def _deauthorized(self, c: Connector) -> None:
        c.suspended = True
        await self._set_status(c, "SuspendedEVSE")


class NoBackupPower(ChargePoint):
    """Goes down with the supply without stopping its transactions (resumes them after the reboot)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.backup_power = False


class ForgetsAvailabilityOnPowerLoss(ChargePoint):
    """Keeps its settings in volatile memory: after a power cut every connector is Operative again."""

    async def power_on(self) -> None:
        for c in self.connectors.values():
            c.operative = True
        await super().power_on()


class BillsNothing(ChargePoint):
    """Reports meterStop equal to meterStart: every transaction bills 0 Wh."""

    def _enqueue_for(self, tx: Transaction, action: str, payload: dict[str, Any]) -> None:
        if action == "StopTransaction":
            payload["meterStop"] = tx.meter_start
        super()._enqueue_for(tx, action, payload)


class MeterStopInKwh(ChargePoint):
    """Reports meterStop in kWh, although the field is in Wh."""

    def _enqueue_for(self, tx: Transaction, action: str, payload: dict[str, Any]) -> None:
        if action == "StopTransaction":
            payload["meterStop"] = round(payload["meterStop"] / 1000)
        super()._enqueue_for(tx, action, payload)


class SamplesKwhLabelledWh(ChargePoint):
    """Sends its energy register samples as kWh numbers with the unit Wh."""

    def sampled_values(self, c: Connector, context: str, measurands: list[str]) -> list[dict[str, Any]]:
        values = super().sampled_values(c, context, measurands)
        for v in values:
            if v["measurand"] == "Energy.Active.Import.Register":
                v["value"] = f"{float(v['value']) / 1000:.3f}"
        return values


class FrozenEnergySamples(ChargePoint):
    """Its energy register samples repeat the transaction's meterStart: the register is read only at the start."""

    def sampled_values(self, c: Connector, context: str, measurands: list[str]) -> list[dict[str, Any]]:
        values = super().sampled_values(c, context, measurands)
        for v in values:
            if v["measurand"] == "Energy.Active.Import.Register" and c.transaction is not None:
                v["value"] = str(c.transaction.meter_start)
        return values


class IgnoresHeartbeatIntervalChange(ChargePoint):
    """Accepts and reports a new HeartbeatInterval but keeps beating at the interval of the boot."""

    async def _boot(self) -> None:
        await super()._boot()
        self.boot_heartbeat = self.config["HeartbeatInterval"].value

    def cfg_int(self, key: str) -> int:
        if key == "HeartbeatInterval":
            return int(getattr(self, "boot_heartbeat", self.config[key].value))
        return super().cfg_int(key)


class IgnoresSampleInterval(ChargePoint):
    """Accepts and reports MeterValueSampleInterval but samples at its factory interval (60 s)."""

    def cfg_int(self, key: str) -> int:
        if key == "MeterValueSampleInterval":
            return 60
        return super().cfg_int(key)


class IgnoresClockAlignedInterval(ChargePoint):
    """Accepts and reports ClockAlignedDataInterval but sends clock-aligned data every 15 minutes."""

    def cfg_int(self, key: str) -> int:
        if key == "ClockAlignedDataInterval":
            return 900
        return super().cfg_int(key)


class AvailabilityAtOnce(ChargePoint):
    """Applies ChangeAvailability Inoperative at once during a transaction: stops it and answers Accepted."""

    async def _on_change_availability(self, p: dict[str, Any]) -> dict[str, Any]:
        if p["type"] == "Inoperative":
            for c in self.connectors.values():
                if c.transaction is not None and p["connectorId"] in (0, c.id):
                    await self._stop_transaction(c, "Other")
        return await super()._on_change_availability(p)


class UnavailableWhileCharging(ChargePoint):
    """Answers Scheduled to ChangeAvailability during a transaction but reports the connector Unavailable at once."""

    async def _on_change_availability(self, p: dict[str, Any]) -> dict[str, Any]:
        answer = await super()._on_change_availability(p)
        if answer["status"] == "Scheduled":
            for c in self.connectors.values():
                if c.pending_operative is False:
                    c.status = "Unavailable"
                    await self._send_status(c)
        return answer


class ForgetsScheduledAvailability(ChargePoint):
    """Answers Scheduled to ChangeAvailability during a transaction, then never applies it."""

    def _apply_pending_availability(self, c: Connector) -> bool:
        c.pending_operative = None
        return False


class UsesDisabledLocalList(ChargePoint):
    """Authorises from its local list even while LocalAuthListEnabled is false."""

    def _local_entry(self, token: str) -> dict[str, Any] | None:
        return self.local_list.get(token) or super()._local_entry(token)


class OfflineUsesDisabledLocalList(ChargePoint):
    """Offline, authorises from its local list even while LocalAuthListEnabled is false."""

    def _local_entry(self, token: str) -> dict[str, Any] | None:
        if not self.uplink.online and token in self.local_list:
            return self.local_list[token]
        return super()._local_entry(token)


DEFECTS: dict[str, set[str]] = {
    "NoStationStatus": {"TC_001_CS", "TC_002_CS"},
    "IgnoresHeartbeatInterval": {"TC_001_CS", "TC_002_CS"},
    "LosesOfflineMeterValues": {"TC_036_CS"},
    "IgnoresProfileLimit": {"TC_057_CS", "TC_082_CS", "TC_059_CS"},
    "BootsOnReconnect": {"TC_036_CS", "TC_037_1_CS", "TC_038_CS"},
    "KeepsChargingOnEVDisconnect": {"TC_005_1_CS", "TC_005_2_CS"},
    "NoRemoteStartBeforePlugIn": {"TC_011_1_CS", "TC_011_2_CS", "TC_024_CS"},
    "IgnoresConnectionTimeOut": {"TC_004_2_CS", "TC_011_2_CS"},
    "RejectsUnknownKey": {"TC_040_1_CS"},
    "AcceptsStaleLocalList": {"TC_043_2_CS"},
    "CompositeIgnoresStationMax": {"TC_066_CS", "TC_067_CS"},
    "ForgetsUnavailableOnReboot": {"TC_013_CS", "TC_014_CS"},
    "SuspendsInsteadOfStopping": {"TC_037_3_CS"},
    "NoBackupPower": {"TC_032_1_CS"},
    "ForgetsAvailabilityOnPowerLoss": {"TC_034_CS"},
    "BillsNothing": {"TC_012_CS", "TC_068_CS"},
    "MeterStopInKwh": {"TC_012_CS", "TC_068_CS"},
    "SamplesKwhLabelledWh": {"TC_070_CS", "TC_071_CS"},
    "FrozenEnergySamples": {"TC_070_CS", "TC_071_CS"},
    "IgnoresHeartbeatIntervalChange": {"TC_021_CS"},
    "IgnoresSampleInterval": {"TC_021_CS", "TC_070_CS", "TC_036_CS"},
    "IgnoresClockAlignedInterval": {"TC_071_CS"},
    "AvailabilityAtOnce": {"TC_012_CS"},
    "UnavailableWhileCharging": {"TC_012_CS"},
    "ForgetsScheduledAvailability": {"TC_012_CS"},
    "UsesDisabledLocalList": {"TC_043_1_CS"},
    "OfflineUsesDisabledLocalList": {"TC_043_1_CS"},
}
"""Defect class -> the OCTT cases that must fail against it."""
