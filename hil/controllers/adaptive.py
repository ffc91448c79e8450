"""The adaptive controller: the planner (``hil.controllers.planner``, an LP solved with HiGHS) and a 1 s
dispatcher.

The planner runs every 5 minutes and on arrivals, departures and limit changes.

**Dispatcher** (every call, normally 1 s): takes the planned rates for the current period (or, without a
fresh plan, the required-rate floor ``e_i / time left`` filled fairly, then the surplus), projects them
onto the *measured* headroom with the 6 A floor, applies decreases at once, ramps increases at 1 A/s
(in steps at most every 10 s),
keeps a 0.5 A dead-band, and falls back to equal share on the worst-case headroom while the shell does
not trust the site meter.

Units: seconds, A per phase, kWh, V.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from hil.controllers.allocation import MIN_CURRENT_A, admit, equal_share, water_fill
from hil.controllers.observation import Array, Decision, Headroom, Observation
from hil.controllers.planner import PERIOD_S, Plan, PlanInput, horizon_periods, plan
from hil.scenarios import Tariff

RAMP_UP_A_PER_S = 1.0
RAMP_STEP_S = 10.0
"""Increases go out at most every 10 s (10 A at 1 A/s): the same ramp in few set-point messages."""
DEAD_BAND_A = 0.5


@dataclass
class Adaptive:
    """Planner + dispatcher. ``tariff`` and ``start_h`` give the price forecast; ``peak_weight`` [per kW];
    ``quick_weight`` large charges early (ACN's quick charge), small shifts energy to cheap periods."""

    tariff: Tariff | None = None
    start_h: float = 0.0
    peak_weight: float = 0.0
    quick_weight: float = 10.0
    energy_value: float = 1.0
    """Value of a delivered kWh in the plan (``PlanInput.energy_value``): raise it with ``peak_weight`` so
    that flattening the peak never costs energy."""
    replan_s: float = PERIOD_S
    unmanaged_max_a: float = 0.0
    name: str = "adaptive"
    architecture: str = "local"
    plans: list[Plan] = field(default_factory=list, init=False)
    _shell: Headroom = field(init=False)
    _plan: Plan | None = field(default=None, init=False)
    _signature: tuple[bytes, float] | None = field(default=None, init=False)
    _deferred: bool = field(default=False, init=False)
    """A re-plan put off by one step so that a lower headroom is applied at once."""
    _sent: Array | None = field(default=None, init=False)
    _raised: Array | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self._shell = Headroom(self.unmanaged_max_a)

    def decide(self, obs: Observation) -> Decision:
        budget = self._shell(obs)
        headroom, caps = budget.headroom_a, budget.caps_a
        obs = replace(obs, phases=budget.phases)  # the phases the shell budgets on (learned from metering)
        n = len(obs.connected)
        if budget.fallback:
            return self._damped(obs, equal_share(caps, obs.phases, headroom))
        signature = (np.packbits(caps > 0).tobytes(), round(float(headroom.min()), 1))
        due = self._plan is None or obs.time - self._plan.start >= self.replan_s or signature != self._signature
        shrunk = self._signature is not None and signature[1] < self._signature[1] - 1e-9
        if due and shrunk and self._plan is not None and not self._deferred:
            # Decreases first: this step projects the old plan onto the lower headroom (below), so the cut
            # does not wait for a solve; the plan follows at the next step.
            self._deferred = True
        elif due:
            self._plan = self._replan(obs, headroom, caps)
            self._signature, self._deferred = signature, False
        assert self._plan is not None
        target = np.minimum(self._plan.now(obs.time), caps)
        if self._plan.status != "optimal":
            target = self._fast_policy(obs, caps, headroom)
        # The plan ignores the 6 A floor: planned rates below it become 6 A where headroom is left after the
        # rest (largest first), else 0. Then project onto the measured headroom (a no-op when feasible).
        base = np.where(target >= MIN_CURRENT_A, target, 0.0)
        small = np.nonzero((target > DEAD_BAND_A) & (target < MIN_CURRENT_A))[0]
        if len(small):
            left = headroom - obs.phases.T @ base
            order_small = small[np.argsort(-target[small], kind="stable")]
            promoted = admit(order_small, obs.phases, np.maximum(left, 0.0), np.where(np.isin(np.arange(n), small), caps, 0.0))
            base = np.where(promoted, MIN_CURRENT_A, base)
        dispatched = equal_share(np.minimum(base, caps), obs.phases, headroom, order=np.argsort(-base, kind="stable"))
        return self._damped(obs, dispatched[:n])

    def _replan(self, obs: Observation, headroom: Array, caps: Array) -> Plan:
        active = obs.departure[np.isfinite(obs.departure) & (caps > 0)]
        horizon = max(float(active.max()) - obs.time, PERIOD_S) if len(active) else PERIOD_S
        durations = horizon_periods(horizon)
        K = len(durations)
        times = obs.time + np.concatenate(([0.0], np.cumsum(durations)[:-1]))
        price = self.tariff.prices(times, self.start_h) if self.tariff is not None else np.full(K, obs.price)
        previous = None
        if self._plan is not None and self._plan.rates_a.shape[0] == len(caps):
            previous = np.zeros((len(caps), K))
            for k in range(K):
                previous[:, k] = self._plan.at(times[k])
        result = plan(PlanInput(
            start=obs.time, phases=obs.phases, ev_max_a=caps, remaining_kwh=np.where(caps > 0, obs.remaining_kwh, 0.0),
            departure=obs.departure, headroom_a=np.repeat(headroom[None, :], K, axis=0), price=price,
            phase_voltage=obs.phase_voltage, peak_weight=self.peak_weight, quick_weight=self.quick_weight,
            energy_value=self.energy_value, previous_a=previous, durations_s=durations,
        ))
        self.plans.append(result)
        return result

    def _fast_policy(self, obs: Observation, caps: Array, headroom: Array) -> Array:
        """Without a plan: the required-rate floor, filled fairly, then the surplus (DRWF)."""
        nph = np.maximum(obs.phases.sum(axis=1), 1.0)
        left = np.maximum(obs.departure - obs.time, PERIOD_S)
        required = np.minimum(caps, obs.remaining_kwh * 3.6e6 / (left * nph * obs.phase_voltage))
        floor = water_fill(required, obs.phases, headroom)
        rest = headroom - obs.phases.T @ floor
        return floor + water_fill(caps - floor, obs.phases, np.maximum(rest, 0.0))

    def _damped(self, obs: Observation, new: Array) -> Decision:
        """Decreases at once; increases at 1 A/s on average, sent in steps at most every 10 s; changes below
        0.5 A ignored; a paused port restarts at 6 A at once."""
        if self._sent is None or len(self._sent) != len(new):
            self._sent = new.copy()
            self._raised = np.full(len(new), obs.time)
            return self._shell.issue(self._sent)
        sent, raised = self._sent, self._raised
        due = obs.time - raised >= RAMP_STEP_S
        allowed = np.where(sent < MIN_CURRENT_A, MIN_CURRENT_A, sent + RAMP_UP_A_PER_S * (obs.time - raised))
        up = (new > sent + DEAD_BAND_A) & (due | (sent < MIN_CURRENT_A))
        out = np.where(up, np.minimum(new, allowed), sent)
        out = np.where(new < sent, new, out)  # decreases at once, whatever their size
        self._raised = np.where(up | (new < sent), obs.time, raised)
        self._sent = out
        return self._shell.issue(out)
