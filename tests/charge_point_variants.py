"""Legal but unusual OCPP 1.6 charge points: each differs from evhil's reference emulator where the specification
leaves the charge point a choice, so the suites must pass it as they pass the reference.

``LEGAL`` names the cases each one's unusualness touches most; ``test_ocpp_variants.py`` runs them against it
(``--cp-emulator charge_point_variants:CLASS``) and requires every one to pass. Each must also pass the whole
1.6 suite.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from hil.ocpp.charge_point import ChargePoint, Connector
from hil.ocpp.rpc import Handler

ENERGY = "Energy.Active.Import.Register"
ANSWER_DELAY_S = 1.0
"""How long ``SlowAnswers`` takes over each request of the Central System [s]."""


class KilowattHourMeter(ChargePoint):
    """Reports its energy register samples in kWh with four decimals (OCPP 1.6 §7.43: the unit field says so)."""

    def sampled_values(self, c: Connector, context: str, measurands: list[str]) -> list[dict[str, Any]]:
        values = super().sampled_values(c, context, measurands)
        for v in values:
            if v["measurand"] == ENERGY and c.outlet is not None:
                v["value"], v["unit"] = f"{c.outlet.energy_wh() / 1000:.4f}", "kWh"
        return values


OPTIONAL_DATA = {
    "MeterValuesSampledData": f"{ENERGY},Power.Active.Import,Current.Import,Voltage,SoC",
    "MeterValuesAlignedData": f"{ENERGY},Power.Active.Import,Current.Import",
    "StopTxnSampledData": f"{ENERGY},Power.Active.Import",
}
"""The measurands ``EveryOptionalField`` is configured with out of the factory."""


class EveryOptionalField(ChargePoint):
    """Sends every optional field it may: BootNotification with its box serial, ICCID, IMSI and meter; status
    notifications with info and vendor codes; meter values of several measurands, current and voltage per
    phase (OCPP 1.6 §3.16.3), each value with its context, format, location and unit; StopTransaction with
    its transaction data."""

    def __init__(self, *args: Any, configure: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, configure={**OPTIONAL_DATA, **(configure or {})}, **kwargs)
        self.identity.update(chargeBoxSerialNumber="EVHIL-BOX-0001", iccid="89310000000000000001",
                             imsi="204040000000001", meterType="emulated SDM630", meterSerialNumber="EVHIL-MTR-0001")

    def status_payload(self, c: Connector) -> dict[str, Any]:
        return {**super().status_payload(c), "info": f"connector {c.id}", "vendorId": "org.evhil",
                "vendorErrorCode": "0"}

    def sampled_values(self, c: Connector, context: str, measurands: list[str]) -> list[dict[str, Any]]:
        if c.outlet is None:
            return []
        reading = c.outlet.plant.reading(c.outlet.port)
        per_phase = {"Current.Import": ("A", [(f"L{k}", f"{i:.2f}") for k, i in enumerate(reading.current, 1)]),
                     "Voltage": ("V", [(f"L{k}-N", f"{v:.1f}") for k, v in enumerate(reading.voltage, 1)])}
        out = []
        for v in super().sampled_values(c, context, measurands):
            common = {"context": context, "format": "Raw", "location": v.get("location", "Outlet")}
            if v["measurand"] in per_phase:
                unit, phases = per_phase[v["measurand"]]
                out += [{**common, "measurand": v["measurand"], "phase": phase, "value": value, "unit": unit}
                        for phase, value in phases]
            else:
                out.append({**common, **v})
        return out


class SlowAnswers(ChargePoint):
    """Takes ``ANSWER_DELAY_S`` s over each request of the Central System before it acts and answers: slow, but
    well within the Central System's response timeout (30 s) and the OCTT message timeout (10 s)."""

    def _guarded(self, action: str, handler: Callable[[dict[str, Any]], Any]) -> Handler:
        guarded = super()._guarded(action, handler)

        async def slowly(payload: dict[str, Any]) -> Any:
            await asyncio.sleep(ANSWER_DELAY_S)
            return await guarded(payload)

        return slowly


class UnavailableAfterUnplug(ChargePoint):
    """Applies a ChangeAvailability scheduled during a transaction once the user has finished, i.e. when the
    cable is out (OCPP 1.6 §4.9 F8), not as soon as the transaction has stopped."""

    def _apply_pending_availability(self, c: Connector) -> bool:
        if c.outlet is not None and c.outlet.plugged_in:
            return False
        return super()._apply_pending_availability(c)


class HeartbeatOnlyWhenIdle(ChargePoint):
    """Sends a Heartbeat only after HeartbeatInterval s without any message exchanged with the Central System
    (OCPP 1.6 §4.6: it may skip one when another message was sent within the interval; §9.1.10)."""

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(0.05)
            interval = self.cfg_int("HeartbeatInterval")
            if interval <= 0 or not (self.uplink.online and self.uplink.boot_accepted.is_set()):
                continue
            frames = self.trace.frames
            if not frames or time.time() - frames[-1].time >= interval:
                await self._try_call("Heartbeat", {})


LEGAL: dict[str, set[str]] = {
    "KilowattHourMeter": {"TC_070_CS", "TC_071_CS", "TC_054_CS", "TC_036_CS"},
    "EveryOptionalField": {"TC_001_CS", "TC_070_CS", "TC_071_CS", "TC_012_CS", "TC_068_CS", "TC_054_CS"},
    "SlowAnswers": {"TC_012_CS", "TC_013_CS", "TC_019_CS", "TC_021_CS", "TC_043_1_CS"},
    "UnavailableAfterUnplug": {"TC_012_CS"},
    "HeartbeatOnlyWhenIdle": {"TC_001_CS", "TC_002_CS", "TC_021_CS"},
}
"""Legal variant -> the cases its unusualness touches most; each must pass."""
