"""Correct OCPP 2.0.1 stations that differ from the reference: in a hardware or optional feature, for the
conditional cases that apply only to them (``VARIANTS``), and in legal but unusual ways that every case must
accept (``LEGAL``; ``test_ocpp201_variants.py``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any

from hil.ocpp.charging_station import ChargingStation, Evse
from hil.ocpp.rpc import Handler


class FixedCable(ChargingStation):
    """A station whose connectors have a cable attached (HFS-2)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs, fixed_cable=True)


class NoEvseReset(ChargingStation):
    """A station that can only be reset as a whole (NOT C-13)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs, evse_reset=False)


class NoSmartCharging(ChargingStation):
    """A station without the Smart Charging functional block (NOT SC; Core's TC_K_38 applies)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs, smart_charging=False)


class OneRateUnit(ChargingStation):
    """A station whose charging schedules support only A, not W (NOT (SC-2.1 and SC-2.2))."""

    def __init__(self, *args: Any, variables: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs, variables={**(variables or {}), "SmartChargingCtrlr.RateUnit": "A"})


VARIANTS: dict[str, dict[str, str]] = {
    "FixedCable": {"TC_E_27_CS": "passed", "TC_E_26_CS": "passed", "TC_E_17_CS": "passed",
                   "TC_E_24_CS": "skipped"},
    "NoEvseReset": {"TC_B_28_CS": "passed", "TC_B_29_CS": "passed", "TC_B_25_CS": "failed"},
    "NoSmartCharging": {"TC_K_15_CS": "passed", "TC_K_38_CS": "passed", "TC_K_12_CS": "skipped",
                        "TC_K_01_CS": "failed"},
    "OneRateUnit": {"TC_K_12_CS": "passed", "TC_K_42_CS": "passed", "TC_K_15_CS": "skipped", "TC_K_38_CS": "skipped"},
}
"""Variant -> case -> the outcome it must have against that variant."""


def energy_in_kwh(mv: dict[str, Any], unit: dict[str, Any]) -> dict[str, Any]:
    """``mv`` with its energy register readings as kWh numbers and ``unit`` as their unitOfMeasure."""
    for sv in mv["sampledValue"]:
        if sv["measurand"] == "Energy.Active.Import.Register":
            sv["value"], sv["unitOfMeasure"] = round(sv["value"] / 1000.0, 4), dict(unit)
    return mv


class EnergyInKilowattHours(ChargingStation):
    """Reports its energy register in kWh, with unitOfMeasure.unit kWh."""

    def meter_value(self, e: Evse, context: str, measurands: list[str], when: datetime | None = None) -> dict[str, Any]:
        return energy_in_kwh(super().meter_value(e, context, measurands, when), {"unit": "kWh"})


class EnergyWithMultiplier(ChargingStation):
    """Reports its energy register as a kWh number in unit Wh with multiplier 3 (value x 10^3 Wh)."""

    def meter_value(self, e: Evse, context: str, measurands: list[str], when: datetime | None = None) -> dict[str, Any]:
        return energy_in_kwh(super().meter_value(e, context, measurands, when), {"unit": "Wh", "multiplier": 3})


SLOW_ANSWER_S = 1.0
"""How long ``SlowToAnswer`` takes over every answer [s]: slow, but far inside every response timeout."""


class SlowToAnswer(ChargingStation):
    """Takes ``SLOW_ANSWER_S`` over its answer to every CSMS request (acting on it when it answers)."""

    def _guarded(self, handler: Callable[[dict[str, Any]], Any]) -> Handler:
        guarded = super()._guarded(handler)

        async def slow(payload: dict[str, Any]) -> Any:
            await asyncio.sleep(SLOW_ANSWER_S)
            return await guarded(payload)
        return slow


LEGAL: dict[str, set[str]] = {
    "EnergyInKilowattHours": {"TC_J_10_CS", "TC_J_09_CS", "TC_J_01_CS", "TC_E_29_CS", "TC_E_11_CS"},
    "EnergyWithMultiplier": {"TC_J_10_CS", "TC_J_09_CS", "TC_J_01_CS", "TC_E_29_CS", "TC_E_11_CS"},
    "SlowToAnswer": {"TC_B_01_CS", "TC_F_04_CS", "TC_E_39_CS", "TC_G_11_CS", "TC_K_28_CS", "TC_K_37_CS",
                     "TC_C_02_CS", "TC_J_09_CS"},
}
"""Legal station -> the cases its unusualness touches most; each must pass against it."""
