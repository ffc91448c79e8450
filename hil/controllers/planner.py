"""The adaptive controller's planner: a linear program over the horizon, solved with HiGHS.

Every 5 minutes and on arrivals, departures and limit changes the adaptive controller chooses per-port
currents ``r[i, k]`` over the horizon to the last departure that maximise energy weighted towards early
periods (``c_k = (K - k) / K``, which front-loads charging and frees capacity), minus the energy cost at
the tariff, minus a peak charge, minus a small smoothness penalty; subject to each EV's maximum, zero
outside its stay, its remaining energy, and the forecast per-phase headroom (including announced demand
response). The 6 A floor is not convex: the dispatcher enforces it.

Units: seconds, A per phase, kWh, V.
"""

from __future__ import annotations

import time as wallclock
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from hil.controllers.observation import Array

PERIOD_S = 300.0
"""Planning period [s]."""


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
