"""Correct OCPP 2.0.1 stations that differ from the reference in a hardware or optional feature, for the
conditional cases that apply only to them (``test_ocpp201_variants.py``)."""

from __future__ import annotations

from typing import Any

from hil.ocpp.charging_station import ChargingStation


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
