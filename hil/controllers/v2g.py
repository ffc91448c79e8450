"""The V2G guard: how much an EV may discharge now without risking its departure charge.

Discharging at ``d`` A per phase for one period is allowed only if the battery stays above its emergency
floor, and if charging at full rate for the rest of the stay can still reach the driver's minimum
departure energy:

- ``E - d x P1 x Dt / eta_d >= E_emergency``
- ``E - d x P1 x Dt / eta_d + eta_c x u x P1 x (t_left - Dt) >= E_min_departure``

with ``P1`` the power of 1 A on the EV's phases. Checked every second by the dispatcher.

Units: kWh, A per phase, V, seconds.
"""

from __future__ import annotations


def max_discharge(
    energy_kwh: float, emergency_kwh: float, min_departure_kwh: float, charge_max_a: float, discharge_max_a: float,
    phases: int, phase_voltage: float, time_left_s: float, period_s: float = 1.0, eta_charge: float = 0.95,
    eta_discharge: float = 0.95,
) -> float:
    """The largest discharge current [A per phase] allowed for the next ``period_s`` seconds (0 if none)."""
    if period_s <= 0 or phases <= 0 or phase_voltage <= 0:
        return 0.0
    kwh_per_a = phases * phase_voltage * period_s / 3.6e6  # energy of 1 A for one period [kWh]
    above_floor = (energy_kwh - emergency_kwh) * eta_discharge / kwh_per_a
    recharge_kwh = eta_charge * charge_max_a * phases * phase_voltage * max(time_left_s - period_s, 0.0) / 3.6e6
    above_departure = (energy_kwh + recharge_kwh - min_departure_kwh) * eta_discharge / kwh_per_a
    return max(0.0, min(discharge_max_a, above_floor, above_departure))
