"""The adaptive controller: the planner (``hil.controllers.planner``, an LP solved with HiGHS) and a 1 s
dispatcher.

The planner runs every 5 minutes and on arrivals, departures and limit changes; it is told the set points
sent now, and keeps them in its first period unless changing pays (``PlanInput.current_a``), and plans
every session to a quarter, a half and three quarters of its request before any session gets more
(``fair_shares``).

**Dispatcher** (every call, normally 1 s): takes the planned rates for the current period (or, without a
fresh plan, the required-rate floor ``e_i / time left`` filled fairly, then the surplus), projects them
onto the *measured* headroom with the 6 A floor, applies decreases at once, ramps increases at 1 A/s
(in steps at most every 10 s),
keeps a 0.5 A dead-band, and falls back to equal share on the worst-case headroom while the shell does
not trust the site meter. A planned rate is the period's energy over the period: a port leaving within
the period gets it in the part it stays; a session the plan finishes within the period keeps its set
point out of the headroom the plan leaves, until its EV is full.

Units: seconds, A per phase, kWh, V.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from hil.controllers.allocation import MIN_CURRENT_A, admit, equal_share, quantise, water_fill
from hil.controllers.observation import Array, Decision, Headroom, Observation, frozen
from hil.controllers.planner import PERIOD_S, Plan, PlanInput, V2GInput, horizon_periods, most_per_kwh, plan
from hil.site.scenarios import GridEvent, Tariff

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
    v2g: bool = False
    """Plan discharge for the bidirectional EVs (``Observation.v2g_floor_kwh``) in the periods with an export
    request, each keeping its minimum departure energy (``PlanInput.v2g``); set under ``SmartGrid``."""
    exports: tuple[GridEvent, ...] = ()
    """V2G: export requests announced ahead (``v2g_export`` events, times from the run's start [s]), so the
    plan pre-charges for them. Without them the plan sees only the request observed now
    (``Observation.export_kw``, for the current period)."""
    export_value: float | None = None
    """V2G: value of an exported kWh in the plan; default twice the largest value of a charged kWh (an
    export request comes before charging early, never before a departure minimum)."""
    fair_shares: tuple[float, ...] = (0.25, 0.5, 0.75)
    """Shares of its request every session is planned to reach, in order, before any session gets more
    (``PlanInput.fair_kwh``); () plans for energy alone."""
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
    _new: Array | None = field(default=None, init=False)
    """The dispatched set points ``_sent`` follows (the same object while the dispatch inputs stay the same)."""
    _earliest: float = field(default=np.inf, init=False)
    """When the earliest increase still pending for ``_new`` was raised last [s] (-inf: due at once)."""
    _inputs: tuple[bytes, bytes] | None = field(default=None, init=False)
    _signature_now: tuple[bytes, float] | None = field(default=None, init=False)
    """The plan signature of the caps and headroom ``_inputs``."""
    _dispatch_key: tuple[bytes | None, bytes, bytes, bytes, bytes | None] | None = field(default=None, init=False)
    _dispatched: Array | None = field(default=None, init=False)
    """The last dispatch and its inputs (see ``_dispatch``)."""
    _period_plan: Plan | None = field(default=None, init=False)
    _period_key: tuple[int, bytes] | None = field(default=None, init=False)
    _period_rates: tuple[Array, NDArray[np.bool_]] | None = field(default=None, init=False)
    """The rates ``_in_stay`` found for a plan period (its index and the departures then)."""
    _period_span: tuple[float, float] = field(default=(0.0, 0.0), init=False)
    """The times [s] of the period ``_period_key`` (from its start, up to the next start)."""
    _planned_for: tuple[Array, Array, Array | None] | None = field(default=None, init=False)
    _planned_out: tuple[Array, Array | None] = field(default=(np.zeros(0), None), init=False)
    """The period's rates, caps and set points sent, and the target and hold ``_planned`` made of them."""

    _requested: Array = field(default_factory=lambda: np.zeros(0), init=False)
    _arrived: Array = field(default_factory=lambda: np.zeros(0), init=False)
    """Each port's request when its session was first seen [kWh], and that session's arrival [s]."""

    def __post_init__(self) -> None:
        self._shell = Headroom(self.unmanaged_max_a)

    def decide(self, obs: Observation) -> Decision:
        budget = self._shell(obs)
        # The dispatch keeps to the phases the shell budgets on (learned from metering; all three for a port
        # not seen drawing yet). The plan counts each port on the observation's phases (metered, or declared
        # while it draws nothing): budgeted on three, a single-phase EV not seen yet costs the plan three
        # times the headroom for its energy, so under congestion it is never planned, never draws and is
        # never seen (it starved), and counting three for its energy planned it a third of it (cost-aware).
        headroom, caps, phases = budget.headroom_a, budget.caps_a, budget.phases
        if budget.fallback:
            return self._damped(obs, self._dispatch(None, caps, phases, headroom))
        inputs = (caps.tobytes(), headroom.tobytes())
        if inputs != self._inputs:  # the signature follows from these alone
            self._inputs = inputs
            self._signature_now = (np.packbits(caps > 0).tobytes(), round(float(headroom.min()), 1))
        signature = self._signature_now
        due = self._plan is None or obs.time - self._plan.start >= self.replan_s or signature != self._signature
        shrunk = self._signature is not None and signature[1] < self._signature[1] - 1e-9
        if due and shrunk and self._plan is not None and not self._deferred:
            # Decreases first: this step projects the old plan onto the lower headroom (below), so the cut
            # does not wait for a solve; the plan follows at the next step.
            self._deferred = True
        elif due:
            declared = np.where(obs.phases.sum(axis=1, keepdims=True) > 0, obs.phases, phases)
            self._plan = self._replan(obs, declared, headroom, caps)
            self._signature, self._deferred = signature, False
        assert self._plan is not None
        hold = None
        if self._plan.status != "optimal":
            target = self._fast_policy(obs, phases, caps, headroom)
        else:
            target, hold = self._planned(obs, caps)
        return self._damped(obs, self._dispatch(target, caps, phases, headroom, hold))

    def _planned(self, obs: Observation, caps: Array) -> tuple[Array, Array | None]:
        """The planned rates for now (``_in_stay``) capped at ``caps`` [A per phase], and the levels [A] that
        finishing ports hold (see ``_dispatch``; None with a demand charge or when no port finishes in this
        period). Kept while the period's rates, the caps and the set points sent are the same objects (none
        of them is changed in place)."""
        rates, finishing = self._in_stay(obs)
        sent = self._sent
        made = self._planned_for
        if made is not None and made[0] is rates and made[1] is caps and made[2] is sent:
            return self._planned_out
        target, hold = np.minimum(rates, caps), None
        if self.peak_weight <= 0 and sent is not None and len(sent) == len(caps) and finishing.any():
            hold = np.where(finishing, np.minimum(sent, caps), 0.0)
        self._planned_for, self._planned_out = (rates, caps, sent), (target, hold)
        return target, hold

    def _in_stay(self, obs: Observation) -> tuple[Array, NDArray[np.bool_]]:
        """The planned rates for now as rates while the EV is there, and which ports the plan gives no
        energy after this period (they finish or leave in it).

        A planned rate is the period's energy over the whole period, so a port that leaves before the period
        ends gets that energy in the part of the period it stays (capped by the caller at the EV's maximum).
        Without this a session leaving mid-period is dispatched at, say, half its planned energy, which on
        short stays planned at full power leaves it short. Computed once per plan period."""
        plan, t = self._plan, obs.time
        assert plan is not None
        if plan is self._period_plan and self._period_key is not None and self._period_span[0] <= t < self._period_span[1]:
            k = self._period_key[0]  # the same period as last time
        else:
            k = int(np.searchsorted(plan.starts, t, side="right")) - 1
        key = (k, obs.departure.tobytes())
        if plan is self._period_plan and key == self._period_key and self._period_rates is not None:
            return self._period_rates
        rates = plan.now(t)
        finishing = np.zeros(len(rates), dtype=bool)
        if 0 <= k < len(plan.starts):
            start = float(plan.starts[k])
            end = float(plan.starts[k + 1]) if k + 1 < len(plan.starts) else plan.end
            if t < end:
                finishing = (rates > 0) & (plan.at(end) <= 0)
                stay = obs.departure - start
                leaving = (stay > 0) & (obs.departure < end)
                if leaving.any():
                    rates = np.where(leaving, rates * ((end - start) / np.where(leaving, stay, 1.0)), rates)
        self._period_plan, self._period_key, self._period_rates = plan, key, (rates, finishing)
        self._period_span = (float(plan.starts[k]) if k >= 0 else -np.inf,
                             float(plan.starts[k + 1]) if k + 1 < len(plan.starts) else np.inf)
        return rates, finishing

    def _dispatch(self, target: Array | None, caps: Array, phases: Array, headroom: Array,
                  hold: Array | None = None) -> Array:
        """Set points for ``target`` projected onto the measured headroom with the 6 A floor; ``None``: the
        fallback's equal share. ``hold``: levels [A] that finishing ports keep out of the headroom the plan
        leaves (see below). The same inputs give the same (shared, read-only) array as last time, which is
        the usual case between plan periods."""
        key = (None if target is None else target.tobytes(), caps.tobytes(), phases.tobytes(), headroom.tobytes(),
               None if hold is None else hold.tobytes())
        if key == self._dispatch_key and self._dispatched is not None:
            return self._dispatched
        if target is None:
            dispatched = equal_share(caps, phases, headroom)
        else:
            # The plan ignores the 6 A floor: planned rates below it become 6 A where headroom is left after
            # the rest (largest first), else 0. Then project onto the measured headroom (a no-op when feasible).
            base = np.where(target >= MIN_CURRENT_A, target, 0.0)
            small = np.nonzero((target > DEAD_BAND_A) & (target < MIN_CURRENT_A))[0]
            if len(small):
                left = headroom - phases.T @ base
                order_small = small[np.argsort(-target[small], kind="stable")]
                promoted = admit(order_small, phases, np.maximum(left, 0.0),
                                 np.where(np.isin(np.arange(len(caps)), small), caps, 0.0))
                base = np.where(promoted, MIN_CURRENT_A, base)
            dispatched = equal_share(np.minimum(base, caps), phases, headroom, order=np.argsort(-base, kind="stable"))
            if hold is not None:
                # A session that finishes in this period keeps its set point while the headroom the plan
                # leaves allows (never taking any from the others): the same energy a little earlier, and
                # one change when its EV is full instead of a taper through the 6 A floor.
                keep = (dispatched >= MIN_CURRENT_A) & (hold > dispatched)
                if keep.any():
                    surplus = np.maximum(headroom - phases.T @ dispatched, 0.0)
                    extra = water_fill(np.where(keep, hold - dispatched, 0.0), phases, surplus)
                    dispatched = quantise(dispatched + extra, caps)
        self._dispatch_key, self._dispatched = key, frozen(dispatched)
        return dispatched

    def _replan(self, obs: Observation, phases: Array, headroom: Array, caps: Array) -> Plan:
        """A new plan: currents within ``headroom`` [A per phase] on ``phases`` (the observation's, where it
        has them) and within ``caps`` [A], each port's energy counted on the phases of ``obs``."""
        capable = np.zeros(len(caps), dtype=bool)
        if self.v2g and obs.v2g_floor_kwh is not None:
            capable = obs.connected & (obs.v2g_floor_kwh > 0) & (phases.sum(axis=1) > 0)
        active = obs.departure[np.isfinite(obs.departure) & ((caps > 0) | capable)]
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
        ev_max, v2g = caps, None
        if capable.any():
            assert obs.v2g_floor_kwh is not None
            # A full bidirectional EV may charge again after an export (a port pinned for not following may not).
            ev_max = np.where(capable & (caps <= 0) & (obs.remaining_kwh <= 0), obs.ev_max_a, caps)
            export = np.zeros(K)  # mean requested export per period [kW]
            for e in self.exports:
                if e.kind == "v2g_export":
                    overlap = np.minimum(times + durations, e.start + e.duration) - np.maximum(times, e.start)
                    export += e.power_kw * np.clip(overlap, 0.0, None) / durations
            export[0] = max(export[0], obs.export_kw)  # what is asked now, announced or not
            stored = np.where(capable, obs.v2g_floor_kwh, 0.0)  # above the emergency floor [kWh]
            minimum = stored + np.maximum(obs.remaining_kwh, 0.0)
            value = self.export_value
            if value is None:  # above a kWh's value at most, fairness tranches included
                most = most_per_kwh(self.energy_value, self.quick_weight, len(self.fair_shares))
                value = 2.0 * (most + float(np.abs(price).max()))
            v2g = V2GInput(discharge_max_a=np.where(capable, obs.ev_max_a, 0.0), stored_kwh=stored,
                           floor_kwh=np.zeros(len(caps)), min_departure_kwh=minimum, capacity_kwh=minimum,
                           export_kw=export, export_value=value)
        fair = None
        if self.fair_shares:
            if len(self._arrived) != len(caps):
                self._requested, self._arrived = np.zeros(len(caps)), np.full(len(caps), np.nan)
            new = obs.connected & (obs.arrival != self._arrived)
            self._requested = np.where(new, obs.remaining_kwh, self._requested)
            self._arrived = np.where(new, obs.arrival, self._arrived)
            had = np.maximum(self._requested - obs.remaining_kwh, 0.0)
            # (The planner gives no tranche to a port it plans nothing for: remaining 0 where caps are 0.)
            fair = np.maximum(np.asarray(self.fair_shares)[None, :] * self._requested[:, None] - had[:, None], 0.0)
        result = plan(PlanInput(
            start=obs.time, phases=phases, charge_phases=obs.phases.sum(axis=1), ev_max_a=ev_max,
            remaining_kwh=np.where(caps > 0, obs.remaining_kwh, 0.0), departure=obs.departure,
            headroom_a=np.repeat(headroom[None, :], K, axis=0), price=price,
            phase_voltage=obs.phase_voltage, peak_weight=self.peak_weight, quick_weight=self.quick_weight,
            energy_value=self.energy_value, previous_a=previous, durations_s=durations, v2g=v2g,
            current_a=None if self._sent is None or len(self._sent) != len(caps) else np.minimum(self._sent, caps),
            fair_kwh=fair,
        ))
        self.plans.append(result)
        return result

    def _fast_policy(self, obs: Observation, phases: Array, caps: Array, headroom: Array) -> Array:
        """Without a plan: the required-rate floor (energy on the phases of ``obs``), filled fairly on the
        budgeted ``phases``, then the surplus (DRWF)."""
        if not np.count_nonzero(caps > 0):
            return np.zeros(len(caps))  # nobody wants energy (the fill below gives the same)
        nph = np.maximum(obs.phases.sum(axis=1), 1.0)
        left = np.maximum(obs.departure - obs.time, PERIOD_S)
        required = np.minimum(caps, obs.remaining_kwh * 3.6e6 / (left * nph * obs.phase_voltage))
        floor = water_fill(required, phases, headroom)
        rest = headroom - phases.T @ floor
        return floor + water_fill(caps - floor, phases, np.maximum(rest, 0.0))

    def _damped(self, obs: Observation, new: Array) -> Decision:
        """Decreases at once; increases at 1 A/s on average, sent in steps at most every 10 s; changes below
        0.5 A ignored; a paused port restarts at 6 A at once."""
        if self._sent is None or len(self._sent) != len(new):
            self._sent = new.copy()
            self._raised = np.full(len(new), obs.time)
            self._new, self._earliest = new, np.inf
            return self._shell.issue(self._sent)
        if new is self._new and obs.time - self._earliest < RAMP_STEP_S:
            return self._shell.issue(self._sent)  # the same target and no increase due: nothing moves
        sent, raised = self._sent, self._raised
        due = obs.time - raised >= RAMP_STEP_S
        allowed = np.where(sent < MIN_CURRENT_A, MIN_CURRENT_A, sent + RAMP_UP_A_PER_S * (obs.time - raised))
        up = (new > sent + DEAD_BAND_A) & (due | (sent < MIN_CURRENT_A))
        out = np.where(up, np.minimum(new, allowed), sent)
        out = np.where(new < sent, new, out)  # decreases at once, whatever their size
        self._raised = np.where(up | (new < sent), obs.time, raised)
        self._sent = out
        # Never above the target now, so with the same target the next increase is due when the earliest
        # raised pending port has waited its 10 s (a paused pending port: at once).
        pending = new > out + DEAD_BAND_A
        if np.count_nonzero(pending & (out < MIN_CURRENT_A)):
            self._earliest = -np.inf
        else:
            self._earliest = float(self._raised[pending].min()) if pending.any() else np.inf
        self._new = new
        return self._shell.issue(out)
