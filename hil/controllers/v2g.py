"""The V2G guard: how much an EV may discharge now without risking its departure charge.

Discharging at ``d`` A per phase for one period is allowed only if the battery stays above its emergency
floor, and if charging at full rate for the rest of the stay can still reach the driver's minimum
departure energy:

- ``E - d x P1 x Dt / eta_d >= E_emergency``
- ``E - d x P1 x Dt / eta_d + eta_c x u x P1 x (t_left - Dt) >= E_min_departure``

with ``P1`` the power of 1 A on the EV's phases. ``SmartGrid`` checks it before every discharge set point. Under an adaptive controller that plans V2G
(``Adaptive.v2g``) and knew of the request ahead, it also discharges no more than the plan: the plan
pre-charges the EVs for the export and keeps back what congestion would not let them recharge.

Units: kWh, A per phase, V, seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hil.controllers.allocation import MIN_CURRENT_A, equal_share
from hil.controllers.observation import Controller, Decision, Observation


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


@dataclass
class SmartGrid:
    """Smart-grid orchestration: ``inner`` charges the site; while the grid requests an export
    (``Observation.export_kw``), the bidirectional EVs discharge to deliver it, each at most what the guard
    allows for the next ``period_s``, shared equally (max-min fair), 0 or at least 6 A.

    A port the guard stops (or that is not needed) goes back to ``inner``'s set point: a stopped export
    turns into charging, which is what keeps the departure minimum reachable (see ``max_discharge``).
    """

    inner: Controller
    period_s: float = 1.0
    """The time until the next decision, for the guard [s]."""
    name: str = "smart-grid"
    architecture: str = field(init=False)

    def __post_init__(self) -> None:
        self.architecture = self.inner.architecture

    def decide(self, obs: Observation) -> Decision:
        decision = self.inner.decide(obs)
        if obs.export_kw <= 0 or obs.v2g_floor_kwh is None:
            return decision
        nph = obs.phases.sum(axis=1)
        capable = obs.connected & (obs.v2g_floor_kwh > 0) & (nph > 0)
        guard = np.zeros(len(obs.connected))
        for i in np.nonzero(capable)[0]:
            floor = float(obs.v2g_floor_kwh[i])
            guard[i] = max_discharge(floor, 0.0, floor + float(obs.remaining_kwh[i]), float(obs.ev_max_a[i]),
                                     float(obs.ev_max_a[i]), int(nph[i]), obs.phase_voltage,
                                     float(obs.departure[i] - obs.time), self.period_s)
        guard = np.minimum(guard, self._planned(obs, guard))
        if not (guard >= MIN_CURRENT_A).any():
            return decision
        # The export as per-phase current, shared over the three phases the discharging EVs feed.
        wanted_a = obs.export_kw * 1000.0 / (3 * obs.phase_voltage)
        share = equal_share(np.where(guard >= MIN_CURRENT_A, guard, 0.0), obs.phases, np.full(3, wanted_a))
        setpoints = np.where(share > 0, -share, np.asarray(decision.setpoints_a, dtype=float))
        return Decision(setpoints, decision.fallback)

    def _planned(self, obs: Observation, guard: np.ndarray) -> np.ndarray:
        """The inner adaptive controller's planned discharge now, when its plan knew of this request (an
        announced export): it keeps back what the stay could not recharge under the site's congestion and
        the finish margin, which the guard's full-rate assumption does not see. Else no further cap."""
        from hil.controllers.adaptive import Adaptive

        inner = self.inner
        if not (isinstance(inner, Adaptive) and inner.v2g and inner.plans):
            return guard
        if not any(e.kind == "v2g_export" and e.start <= obs.time < e.start + e.duration for e in inner.exports):
            return guard
        return inner.plans[-1].discharge_at(obs.time)
