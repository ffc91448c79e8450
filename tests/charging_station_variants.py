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


VARIANTS: dict[str, dict[str, str]] = {
    "FixedCable": {"TC_E_27_CS": "passed", "TC_E_26_CS": "passed", "TC_E_17_CS": "passed",
                   "TC_E_24_CS": "skipped"},
    "NoEvseReset": {"TC_B_28_CS": "passed", "TC_B_29_CS": "passed", "TC_B_25_CS": "failed"},
}
"""Variant -> case -> the outcome it must have against that variant."""
