"""The adaptive controller: a planner (a linear program solved with HiGHS) and a 1 s dispatcher.

**Planner** (every 5 minutes and on arrivals, departures and limit changes): over the horizon to the
last departure in 5-minute periods, choose per-port currents ``r[i, k]`` that maximise energy weighted
towards early periods (``c_k = (K - k) / K``, which front-loads charging and frees capacity), minus the
energy cost at the tariff, minus a peak charge, minus a small smoothness penalty; subject to each EV's
maximum, zero outside its stay, its remaining energy, and the forecast per-phase headroom (including
announced demand response). The 6 A floor is not convex: the dispatcher enforces it.

**Dispatcher** (every call, normally 1 s): takes the planned rates for the current period (or, without a
fresh plan, the required-rate floor ``e_i / time left`` filled fairly, then the surplus), projects them
onto the *measured* headroom with the 6 A floor, applies decreases at once, ramps increases at 1 A/s
(in steps at most every 10 s),
keeps a 0.5 A dead-band, and falls back to equal share on the worst-case headroom while the shell does
not trust the site meter.

Units: seconds, A per phase, kWh, V.
"""

from __future__ import annotations

import time as wallclock
from dataclasses import dataclass, field, replace

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from hil.controllers.allocation import MIN_CURRENT_A, admit, equal_share, water_fill
from hil.controllers.observation import Array, Decision, Headroom, Observation
from hil.scenarios import Scenario, Tariff

PERIOD_S = 300.0
"""Planning period [s]."""
RAMP_UP_A_PER_S = 1.0
RAMP_STEP_S = 10.0
"""Increases go out at most every 10 s (10 A at 1 A/s): the same ramp in few set-point messages."""
DEAD_BAND_A = 0.5


@dataclass(frozen=True)
class PlanInput:
    """One planning problem. Port arrays: one entry per port (zero ``remaining`` = nothing to plan)."""

    start: float
    phases: Array
    ev_max_a: Array
    remaining_kwh: Array
    departure: Array
    headroom_a: Array
    """(K, 3) forecast headroom per period and phase [A]."""
    price: Array
    """(K,) energy price per kWh."""
    phase_voltage: float = 230.0
    peak_weight: float = 0.0
    """Cost per kW of the plan's peak (demand charge share)."""
    smoothness: float = 0.0
    """Cost of |r[k] - r[k-1]|. Off by default: the absolute-value rows make HiGHS 50-250 times slower at
    N = 200; the dispatcher's dead-band and ramps keep set points smooth instead."""
    period_s: float = PERIOD_S
    durations_s: Array | None = None
    """Length of each period [s] when they differ (fine near now, coarse far out); default ``period_s``."""
    energy_value: float = 1.0
    """Value of a delivered kWh (above any price, so energy comes first)."""
    quick_weight: float = 10.0
    """Extra value of early energy, scaled by (K - k) / K: large = charge as early as possible (quick),
    small = shift to cheap periods when the departure allows (cost-aware)."""
    previous_a: Array | None = None
    """(ports, K) the last plan's rates for these periods: among equally good plans, prefer the one
    closest to it (a linear bonus, so set points do not jump between replans)."""
    stability: float = 0.05
    finish_margin_s: float = 900.0
    """Plan each session to finish this long before its departure (where the stay allows), so that
    dispatch losses near the end do not leave it short [s]."""


@dataclass
class Plan:
    start: float
    rates_a: Array
    """(ports, K) planned current per period [A per phase]."""
    status: str
    solve_s: float
    starts: Array
    """(K,) start of each period [s]."""
    end: float
    """End of the last period [s]."""

    def now(self, t: float) -> Array:
        """Planned rates for the period holding ``t`` (the first or last period outside the horizon)."""
        k = int(np.searchsorted(self.starts, t, side="right")) - 1
        return self.rates_a[:, min(max(k, 0), self.rates_a.shape[1] - 1)]

    def at(self, t: float) -> Array:
        """Planned rates at ``t``; zeros outside the plan's horizon."""
        if t < self.starts[0] or t >= self.end:
            return np.zeros(self.rates_a.shape[0])
        return self.now(t)


def plan(p: PlanInput) -> Plan:
    """Solve the planning LP with HiGHS. Returns zeros with status ``empty`` when nobody needs energy."""
    t0 = wallclock.perf_counter()
    K = len(p.price)
    n = len(p.ev_max_a)
    dur = np.full(K, p.period_s) if p.durations_s is None else np.asarray(p.durations_s, dtype=float)
    period_start = p.start + np.concatenate(([0.0], np.cumsum(dur)[:-1]))
    end = float(period_start[-1] + dur[-1])
    nph = p.phases.sum(axis=1)
    want = (p.remaining_kwh > 1e-6) & (p.ev_max_a > 0) & (nph > 0)
    # Port i may charge in period k for the share of it before its (margin-advanced) departure.
    finish = np.maximum(p.departure - p.finish_margin_s, np.minimum(p.departure, p.start + p.period_s))
    share = np.clip((finish[:, None] - period_start[None, :]) / dur[None, :], 0.0, 1.0)
    allowed = want[:, None] & (share > 1e-9)
    idx_i, idx_k = np.nonzero(allowed)
    m = len(idx_i)
    rates = np.zeros((n, K))
    if m == 0:
        return Plan(p.start, rates, "empty", wallclock.perf_counter() - t0, period_start, end)
    smooth = p.smoothness > 0
    # Variables: r (m), peak (1), then |r_k - r_{k-1}| per r (m) if smoothing.
    n_var = m + 1 + (m if smooth else 0)
    weight = (end - period_start[idx_k]) / (end - p.start)  # quick-charge weight: 1 now, 0 at the horizon
    energy = nph[idx_i] * p.phase_voltage * dur[idx_k] / 3.6e6  # kWh of 1 A for the period
    c = np.zeros(n_var)
    # Urgency: the share of its maximum an EV needs for the rest of its stay; tight sessions are worth more,
    # so under congestion the plan serves the EVs that cannot wait (a least-laxity tie-break).
    stay_s = np.where(np.isfinite(p.departure), np.maximum(p.departure - p.start, p.period_s), np.inf)
    stay_kwh = p.ev_max_a * nph * p.phase_voltage * np.minimum(stay_s, 1e9) / 3.6e6
    urgency = np.clip(np.divide(p.remaining_kwh, stay_kwh, out=np.zeros(n), where=stay_kwh > 0), 0.0, 1.0)
    c[:m] = -(p.energy_value * (1.0 + urgency[idx_i]) + p.quick_weight * weight - p.price[idx_k]) * energy
    if p.previous_a is not None:
        keep = p.previous_a[idx_i, idx_k] / np.maximum(p.ev_max_a[idx_i], 1e-9)  # 0..1: share planned before
        c[:m] -= p.stability * keep * energy
    c[m] = p.peak_weight
    if smooth:
        c[m + 1:] = p.smoothness
    rows, cols, vals, rhs = [], [], [], []
    row = 0
    # Per-phase headroom per period.
    for phase in range(3):
        on = p.phases[idx_i, phase] > 0
        sel = np.nonzero(on)[0]
        rows.append(row + idx_k[sel])
        cols.append(sel)
        vals.append(np.ones(len(sel)))
        rhs.append(np.maximum(p.headroom_a[:, phase], 0.0))
        row += K
    # Remaining energy per port.
    port_row = np.full(n, -1)
    wanted = np.nonzero(want)[0]
    port_row[wanted] = row + np.arange(len(wanted))
    rows.append(port_row[idx_i])
    cols.append(np.arange(m))
    vals.append(energy)
    rhs.append(p.remaining_kwh[wanted])
    row += len(wanted)
    # Peak: sum_i nph V r / 1000 - peak <= 0, per period.
    rows.append(row + idx_k)
    cols.append(np.arange(m))
    vals.append(nph[idx_i] * p.phase_voltage / 1000.0)
    rows.append(row + np.arange(K))
    cols.append(np.full(K, m))
    vals.append(np.full(K, -1.0))
    rhs.append(np.zeros(K))
    row += K
    if smooth:
        # d_j >= r_j - r_prev(j) and d_j >= r_prev(j) - r_j, with r_prev of the same port one period earlier.
        order = np.lexsort((idx_k, idx_i))
        prev = np.full(m, -1)
        same = (idx_i[order][1:] == idx_i[order][:-1]) & (idx_k[order][1:] == idx_k[order][:-1] + 1)
        prev[order[1:][same]] = order[:-1][same]
        j = np.nonzero(prev >= 0)[0]
        for sign in (1.0, -1.0):
            rows += [row + np.arange(len(j))] * 3
            cols += [j, prev[j], m + 1 + j]
            vals += [np.full(len(j), sign), np.full(len(j), -sign), np.full(len(j), -1.0)]
            rhs.append(np.zeros(len(j)))
            row += len(j)
    A = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(row, n_var))
    bounds = np.zeros((n_var, 2))
    bounds[:m, 1] = p.ev_max_a[idx_i] * share[idx_i, idx_k]
    bounds[m:, 1] = np.inf
    result = linprog(c, A_ub=A, b_ub=np.concatenate(rhs), bounds=bounds, method="highs")
    if result.x is not None:
        rates[idx_i, idx_k] = np.maximum(result.x[:m], 0.0)
    return Plan(p.start, rates, "optimal" if result.status == 0 else f"failed ({result.message})",
                wallclock.perf_counter() - t0, period_start, end)


def horizon_periods(horizon_s: float) -> Array:
    """Period lengths covering ``horizon_s``: 5 minutes for the first 2 h, 15 minutes to 8 h, then hours.
    What is far away will be re-planned anyway; coarse periods there keep the LP small."""
    out: list[float] = []
    t = 0.0
    while t < horizon_s:
        step = PERIOD_S if t < 2 * 3600 else 900.0 if t < 8 * 3600 else 3600.0
        out.append(step)
        t += step
    return np.asarray(out)


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


def offline_optimum(scenario: Scenario, period_s: float = PERIOD_S) -> tuple[float, float]:
    """The most energy any controller could deliver with perfect knowledge of the day, and the total
    requested [kWh]: one LP over every session at ``period_s`` resolution, under the limit trace the
    simulator enforces (events included) less the safety margin every controller keeps (2 % + 1 A),
    each EV only inside its stay and never above its maximum. The 6 A floor is relaxed, so this is an
    upper bound."""
    from hil.simulation import limit_trace

    K = int(np.ceil(scenario.duration / period_s))
    t = np.arange(K) * period_s
    _, enforced, _, unmanaged = limit_trace(scenario, t)
    sessions = scenario.sessions
    n = len(sessions)
    phases = np.zeros((n, 3))
    for k, s in enumerate(sessions):
        phases[k, list(s.phases)] = 1.0
    arrival = np.array([s.arrival for s in sessions])
    departure = np.array([s.departure for s in sessions])
    # Fraction of each period the EV is there: its current is capped at that share of its maximum.
    overlap = np.clip(np.minimum(departure[:, None], t[None, :] + period_s) - np.maximum(arrival[:, None], t[None, :]), 0.0, period_s)
    present = overlap > 1e-9
    idx_i, idx_k = np.nonzero(present)
    m = len(idx_i)
    energy = phases.sum(axis=1)[idx_i] * scenario.phase_voltage * period_s / 3.6e6  # kWh per A in the period
    phase_rows = [(p * K + idx_k[phases[idx_i, p] > 0], np.nonzero(phases[idx_i, p] > 0)[0]) for p in range(3)]
    rows = np.concatenate([r for r, _ in phase_rows] + [3 * K + idx_i])
    cols = np.concatenate([c for _, c in phase_rows] + [np.arange(m)])
    vals = np.concatenate([np.ones(len(c)) for _, c in phase_rows] + [energy])
    A = sp.csr_matrix((vals, (rows, cols)), shape=(3 * K + n, m))
    room = np.maximum(enforced - unmanaged - (0.02 * enforced + 1.0), 0.0)  # the same safety margin controllers keep
    b = np.concatenate([room, room, room, [s.energy_kwh for s in sessions]])
    caps = np.array([s.max_current_a for s in sessions])[idx_i] * overlap[idx_i, idx_k] / period_s
    result = linprog(-energy, A_ub=A, b_ub=b, bounds=np.stack([np.zeros(m), caps], axis=1), method="highs")
    delivered = float(-result.fun) if result.status == 0 else float("nan")
    return delivered, float(sum(s.energy_kwh for s in sessions))


def offline_min_cost(scenario: Scenario, energy_kwh: Array, *, demand: bool = True, period_s: float = PERIOD_S) -> tuple[float, float]:
    """The cheapest way any controller could deliver ``energy_kwh`` (per session, in arrival order) with
    perfect knowledge of the day: one LP at ``period_s`` resolution under the same limit trace and margin
    as ``offline_optimum``, each EV only inside its stay and never above its maximum. Minimises the
    energy cost at the tariff plus, with ``demand``, the demand charge on the peak [kW]. Returns
    ``(energy cost, peak kW)``; (nan, nan) if the energy cannot be delivered."""
    from hil.simulation import limit_trace

    K = int(np.ceil(scenario.duration / period_s))
    t = np.arange(K) * period_s
    _, enforced, _, unmanaged = limit_trace(scenario, t)
    sessions = sorted(scenario.sessions, key=lambda s: s.arrival)
    n = len(sessions)
    phases = np.zeros((n, 3))
    for k, s in enumerate(sessions):
        phases[k, list(s.phases)] = 1.0
    arrival = np.array([s.arrival for s in sessions])
    departure = np.array([s.departure for s in sessions])
    overlap = np.clip(np.minimum(departure[:, None], t[None, :] + period_s) - np.maximum(arrival[:, None], t[None, :]), 0.0, period_s)
    idx_i, idx_k = np.nonzero(overlap > 1e-9)
    m = len(idx_i)
    nph = phases.sum(axis=1)
    energy = nph[idx_i] * scenario.phase_voltage * period_s / 3.6e6  # kWh per A in the period
    price = scenario.tariff.prices(t + period_s / 2, scenario.start_h)
    c = np.concatenate([price[idx_k] * energy, [scenario.tariff.demand_per_kw if demand else 0.0]])
    phase_rows = [(p * K + idx_k[phases[idx_i, p] > 0], np.nonzero(phases[idx_i, p] > 0)[0]) for p in range(3)]
    # Peak: site power (ports plus the unmanaged load) <= peak, per period.
    rows = np.concatenate([r for r, _ in phase_rows] + [3 * K + idx_k, 3 * K + np.arange(K)])
    cols = np.concatenate([cc for _, cc in phase_rows] + [np.arange(m), np.full(K, m)])
    vals = np.concatenate([np.ones(len(cc)) for _, cc in phase_rows] + [nph[idx_i] * scenario.phase_voltage / 1000.0, -np.ones(K)])
    A = sp.csr_matrix((vals, (rows, cols)), shape=(4 * K, m + 1))
    room = np.maximum(enforced - unmanaged - (0.02 * enforced + 1.0), 0.0)
    b = np.concatenate([room, room, room, -3.0 * unmanaged * scenario.phase_voltage / 1000.0])
    A_eq = sp.csr_matrix((energy, (idx_i, np.arange(m))), shape=(n, m + 1))
    caps = np.array([s.max_current_a for s in sessions])[idx_i] * overlap[idx_i, idx_k] / period_s
    bounds = np.concatenate([np.stack([np.zeros(m), caps], axis=1), [[0.0, np.inf]]])
    result = linprog(c, A_ub=A, b_ub=b, A_eq=A_eq, b_eq=np.asarray(energy_kwh, dtype=float), bounds=bounds, method="highs")
    if result.status != 0:
        return float("nan"), float("nan")
    return float(c[:m] @ result.x[:m]), float(result.x[m])
