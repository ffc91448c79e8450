"""The adaptive controller's planner: a linear program over the horizon, solved with HiGHS.

Every 5 minutes and on arrivals, departures and limit changes the adaptive controller chooses per-port
currents ``r[i, k]`` over the horizon to the last departure that maximise energy weighted towards early
periods (``c_k = (K - k) / K``, which front-loads charging and frees capacity), minus the energy cost at
the tariff, minus a peak charge, minus a small smoothness penalty; subject to each EV's maximum, zero
outside its stay, its remaining energy, and the forecast per-phase headroom (including announced demand
response). The 6 A floor is not convex: the dispatcher enforces it.

Who charges when is often a tie (EVs that all get their energy whichever way the periods are shared).
A vertex of the LP then shares them out arbitrarily, and re-planned every 5 minutes the ports took turns:
paused, restarted and ramped up again at every period, 7 set-point changes per session-hour on the depot
and a few per cent of the headroom lost to each restart's ramp. Changing a port's first-period rate from
the set point it has now (``PlanInput.current_a``) costs a little, so the ports charging go on, the others
wait, and a port changes when its energy, its departure or the price says so.

**Fairness** (``PlanInput.fair_kwh``): the energy that takes each session to a quarter, a half and three
quarters of its request is worth more, each tranche ``FAIR_RATIO`` times the next. Planned for energy
alone, heavy congestion starved sessions: a single-phase EV gives a third of the energy per A of a
congested phase, so the LP left it nothing (at 7 % of nameplate a tenth of the sessions got none).

**V2G** (optional, ``PlanInput.v2g``): a bidirectional EV may also discharge ``x[i, k]`` in the periods
with an export request, never more than its discharge maximum, nor in total more than the request. Its
stored energy ``E`` follows ``E[k+1] = E[k] + eta_c e r - e x / eta_d`` (``e``: kWh of 1 A for the
period), stays within its emergency floor and its capacity at every period end, and reaches its minimum
departure energy (soft: a shortfall costs ``shortfall_cost`` per kWh and is reported). The net export
of the bidirectional EVs (discharge less their charging) is valued at ``export_value`` per kWh, up to the
request. Discharging is valued as negative charging (it gives back the charge's value and earns the
price), so energy moved through a battery gains only the export value. Discharge does not free headroom
for other ports in the plan (the dispatcher does not count on it).

Formulation: the ports' currents enter the headroom and peak rows through one aggregate per period and
phase pattern (1-phase L1/L2/L3, 3-phase, ...), so that each current appears in two rows (its period
group and its energy row) instead of four or five; the peak variable exists only with a peak weight.
The optimum is the same as with the rows written per port.

Solving: a small LP is solved at once with HiGHS's dual simplex. A large one (``SIFT_COLUMNS`` charging
cells or more, e.g. 1,000 ports over 24 h in 5-minute periods: 170,000) is solved by sifting: the same
problem on blocks of ``COARSEN`` periods is planned first (recursively, so 5 minutes start from 15, which
start from 45), the fine LP is solved on the cells the coarse plan charges in, and cells whose reduced
cost says they would improve it are added until none would. The result is an optimum of the whole LP,
found 5-10 times faster, and 100 times faster when price matters more than charging early (see
``benchmarks/bench_planner.py``).

Units: seconds, A per phase, kWh, V, kW.
"""

from __future__ import annotations

import os
import sys
import time as wallclock
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp
import highspy

from hil.controllers.observation import Array

PERIOD_S = 300.0
"""Planning period [s]."""


@dataclass(frozen=True)
class V2GInput:
    """The bidirectional EVs of a planning problem. Port arrays have one entry per port; energies are the
    battery's, in any common reference per port (e.g. above the emergency floor) [kWh]."""

    discharge_max_a: Array
    """Largest discharge current per port [A per phase]; 0 for an EV that cannot discharge."""
    stored_kwh: Array
    """Energy stored now [kWh]."""
    floor_kwh: Array
    """Emergency floor: the stored energy never goes below it at a period end [kWh]."""
    min_departure_kwh: Array
    """Minimum stored energy at departure [kWh] (soft: see ``shortfall_cost``)."""
    capacity_kwh: Array
    """The stored energy never goes above it at a period end [kWh] (e.g. what the driver asked for)."""
    export_kw: Array
    """(K,) the export the grid requests per period [kW] (0: none). Discharge is planned only there."""
    export_value: float = 1.0
    """Value of a kWh exported in a requested period (above any price and energy value: export first)."""
    eta_charge: float = 0.95
    eta_discharge: float = 0.95
    """Charge and discharge efficiencies (grid to battery, battery to grid), as the guard assumes."""
    shortfall_cost: float | None = None
    """Cost of a kWh short of a minimum departure energy; default 100 x the largest value per kWh in the
    objective (the large M)."""

    @staticmethod
    def none(n: int, periods: int) -> "V2GInput":
        """No EV can discharge and nothing is requested (the plan is the one without V2G)."""
        z = np.zeros(n)
        return V2GInput(z, z, z, z, z, np.zeros(periods))


@dataclass(frozen=True)
class PlanInput:
    """One planning problem. Port arrays: one entry per port (zero ``remaining`` = nothing to plan)."""

    start: float
    phases: Array
    """(ports, 3) 0/1: the phases each port's current takes headroom on."""
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
    current_a: Array | None = None
    """(ports,) the set points the ports have now [A]: the first period's rates keep them unless changing
    pays more than ``change_cost``, so that the ports charging now go on and the others wait, instead of
    ports taking turns at every re-plan among equally good plans. Replaces ``previous_a`` in the first
    period."""
    change_cost: float = 0.05
    """Cost of changing a port's rate in the first period from ``current_a`` [per kWh of 1 A in it]."""
    fair_kwh: Array | None = None
    """(ports, tranches) the energy each session still needs to reach each of a few shares of its request,
    in increasing order (e.g. 25, 50 and 75 % of it, less what it has had) [kWh]. Energy in the last
    tranche is worth ``fair_weight`` times the most a kWh is otherwise worth more, each tranche before it
    ``FAIR_RATIO`` times as much again, so that under congestion every session reaches a share before any
    session goes beyond it, even one whose energy costs three times the headroom (a single-phase EV on a
    congested phase): a concave reward on each session's share, near max-min fairness. Without congestion
    every tranche fills and nothing changes."""
    fair_weight: float = 1.0
    finish_margin_s: float = 900.0
    """Plan each session to finish this long before its departure (where the stay allows), so that
    dispatch losses near the end do not leave it short [s]."""
    v2g: V2GInput | None = None
    """Bidirectional EVs and export requests; None = no V2G (no discharge variables at all)."""
    charge_phases: Array | None = None
    """(ports,) how many phases each port's current flows on [count], for its energy and power (kWh of 1 A,
    what its stay can take, kW exported); default those of ``phases``. Fewer where ``phases`` budgets a port
    on more than it draws on: the safety shell budgets a port on all three until its meter has shown its
    phases, and counting three for a single-phase EV would plan it a third of its energy."""

    @property
    def charge_count(self) -> Array:
        """(ports,) the phases each port's current charges on [count] (``charge_phases`` or its default)."""
        return self.phases.sum(axis=1) if self.charge_phases is None else np.asarray(self.charge_phases, dtype=float)


@dataclass
class Plan:
    start: float
    rates_a: Array
    """(ports, K) planned charging current per period [A per phase, >= 0]."""
    status: str
    solve_s: float
    starts: Array
    """(K,) start of each period [s]."""
    end: float
    """End of the last period [s]."""
    discharge_a: Array | None = None
    """V2G: (ports, K) planned discharge current per period [A per phase, >= 0; the port's net current is
    ``rates_a - discharge_a``]; None for a plan without V2G input."""
    export_kw: Array | None = None
    """V2G: (K,) planned net export of the bidirectional EVs per period [kW], at most the request."""
    stored_kwh: Array | None = None
    """V2G: (ports, K + 1) planned stored energy at each period boundary [kWh] (nan for ports that cannot
    discharge)."""
    shortfall_kwh: Array | None = None
    """V2G: (ports,) planned shortfall below the minimum departure energy [kWh] (0: reached)."""
    objective: float = float("nan")
    """The LP's optimum (the cost it minimises: lower is better); nan when nothing was solved."""

    def now(self, t: float) -> Array:
        """Planned rates for the period holding ``t`` (the first or last period outside the horizon)."""
        k = int(np.searchsorted(self.starts, t, side="right")) - 1
        return self.rates_a[:, min(max(k, 0), self.rates_a.shape[1] - 1)]

    def at(self, t: float) -> Array:
        """Planned rates at ``t``; zeros outside the plan's horizon."""
        if t < self.starts[0] or t >= self.end:
            return np.zeros(self.rates_a.shape[0])
        return self.now(t)

    def discharge_at(self, t: float) -> Array:
        """Planned discharge at ``t`` [A per phase, >= 0]; zeros outside the horizon or without V2G."""
        if self.discharge_a is None or t < self.starts[0] or t >= self.end:
            return np.zeros(self.rates_a.shape[0])
        return self.discharge_a[:, int(np.searchsorted(self.starts, t, side="right")) - 1]


class _Rows:
    """Sparse rows collected as triplets."""

    def __init__(self) -> None:
        self.rows: list[Array] = []
        self.cols: list[Array] = []
        self.vals: list[Array] = []
        self.rhs: list[Array] = []
        self.count = 0

    def add(self, rows: Array, cols: Array, vals: Array | float) -> None:
        """Entries at ``rows`` (relative to the next block) and ``cols``."""
        self.rows.append(self.count + np.asarray(rows))
        self.cols.append(np.asarray(cols))
        self.vals.append(np.broadcast_to(np.asarray(vals, dtype=float), np.shape(cols)))

    def close(self, rhs: Array) -> None:
        """End the block: one row per entry of ``rhs``."""
        self.rhs.append(np.asarray(rhs, dtype=float))
        self.count += len(self.rhs[-1])

    def matrix(self, n_var: int) -> tuple[sp.csr_matrix | None, Array | None]:
        if not self.count:
            return None, None
        A = sp.csr_matrix((np.concatenate(self.vals), (np.concatenate(self.rows), np.concatenate(self.cols))),
                          shape=(self.count, n_var))
        return A, np.concatenate(self.rhs)


def plan(p: PlanInput) -> Plan:
    """Solve the planning LP with HiGHS. Returns zeros with status ``empty`` when nobody needs energy (and
    nothing can be exported)."""
    t0 = wallclock.perf_counter()
    K = len(p.price)
    n = len(p.ev_max_a)
    dur = np.full(K, p.period_s) if p.durations_s is None else np.asarray(p.durations_s, dtype=float)
    period_start = p.start + np.concatenate(([0.0], np.cumsum(dur)[:-1]))
    end = float(period_start[-1] + dur[-1])
    nph = p.phases.sum(axis=1)
    v2g = p.v2g
    bidir = np.zeros(n, dtype=bool) if v2g is None else (np.asarray(v2g.discharge_max_a) > 0) & (nph > 0)
    want = ((p.remaining_kwh > 1e-6) | bidir) & (p.ev_max_a > 0) & (nph > 0)
    # Port i may charge in period k for the share of it before its (margin-advanced) departure.
    finish = np.maximum(p.departure - p.finish_margin_s, np.minimum(p.departure, p.start + p.period_s))
    share = np.clip((finish[:, None] - period_start[None, :]) / dur[None, :], 0.0, 1.0)
    allowed = want[:, None] & (share > 1e-9)
    idx_i, idx_k = np.nonzero(allowed)
    m = len(idx_i)
    if v2g is not None:
        export = np.maximum(np.asarray(v2g.export_kw, dtype=float), 0.0)
        xi, xk = np.nonzero(bidir[:, None] & (export[None, :] > 0) & (share > 1e-9))
    else:
        export = np.zeros(K)
        xi = xk = np.zeros(0, dtype=int)
    mx = len(xi)
    rates = np.zeros((n, K))
    discharge = None if v2g is None else np.zeros((n, K))
    if m + mx == 0:
        return Plan(p.start, rates, "empty", wallclock.perf_counter() - t0, period_start, end, discharge,
                    None if v2g is None else np.zeros(K), None if v2g is None else _stored(p, v2g, bidir, rates, rates, dur),
                    None if v2g is None else np.zeros(n))
    weight = (end - period_start) / (end - p.start)  # quick-charge weight: 1 now, 0 at the horizon
    charging = p.charge_count
    kwh_per_a = charging[:, None] * p.phase_voltage * dur[None, :] / 3.6e6  # (ports, K) kWh of 1 A for the period
    # Urgency: the share of its maximum an EV needs for the rest of its stay; tight sessions are worth more,
    # so under congestion the plan serves the EVs that cannot wait (a least-laxity tie-break).
    stay_s = np.where(np.isfinite(p.departure), np.maximum(p.departure - p.start, p.period_s), np.inf)
    stay_kwh = p.ev_max_a * charging * p.phase_voltage * np.minimum(stay_s, 1e9) / 3.6e6
    urgency = np.clip(np.divide(p.remaining_kwh, stay_kwh, out=np.zeros(n), where=stay_kwh > 0), 0.0, 1.0)

    def value(i: Array, k: Array) -> Array:
        """Value of 1 A in cell (i, k) of the charging plan [per A]."""
        return (p.energy_value * (1.0 + urgency[i]) + p.quick_weight * weight[k] - p.price[k]) * kwh_per_a[i, k]

    # Phase-pattern groups: one aggregate current per (period, pattern) that has ports.
    pattern = (p.phases > 0).astype(int) @ np.array([1, 2, 4])
    keys, group = np.unique(idx_k * 8 + pattern[idx_i], return_inverse=True)
    G = len(keys)
    group_k, group_bits = keys // 8, ((keys % 8)[:, None] >> np.arange(3)) & 1
    ports_b = np.nonzero(bidir)[0]
    nb = len(ports_b)
    # Checkpoints of each bidirectional port's stored energy: the end of each export period, of the period
    # before each run of them, and of its last period. Between two, it only charges (so it only rises).
    cp_port: list[int] = []
    cp_k: list[int] = []
    for i in ports_b:
        last = int(np.nonzero(share[i] > 1e-9)[0].max(initial=0))
        ex = export[: last + 1] > 0
        ends = ex | np.append(ex[1:], False) | (np.arange(last + 1) == last)
        ks = np.nonzero(ends)[0]
        cp_port += [i] * len(ks)
        cp_k += list(ks)
    cp_port_a, cp_k_a = np.asarray(cp_port, dtype=int), np.asarray(cp_k, dtype=int)
    S = len(cp_port_a)
    export_k = np.unique(xk)
    nX = len(export_k)
    peak = p.peak_weight > 0
    # Variables: r (m) | x (mx) | g (G) | E at checkpoints (S) | shortfall (nb) | export (nX) | peak (0/1).
    o_x, o_g = m, m + mx
    o_E = o_g + G
    o_s = o_E + S
    o_X = o_s + nb
    o_P = o_X + nX
    n_var = o_P + (1 if peak else 0)
    c = np.zeros(n_var)
    c[:m] = -value(idx_i, idx_k)
    if p.previous_a is not None:
        keep = p.previous_a[idx_i, idx_k] / np.maximum(p.ev_max_a[idx_i], 1e-9)  # 0..1: share planned before
        if p.current_a is not None:
            keep = np.where(idx_k == 0, 0.0, keep)  # the first period follows the set points instead
        c[:m] -= p.stability * keep * kwh_per_a[idx_i, idx_k]
    if peak:
        c[o_P] = p.peak_weight
    bounds = np.zeros((n_var, 2))
    bounds[:m, 1] = p.ev_max_a[idx_i] * share[idx_i, idx_k]
    bounds[m:, 1] = np.inf
    eq, ub = _Rows(), _Rows()
    # Groups: sum of the group's currents - g = 0.
    eq.add(group, np.arange(m), 1.0)
    eq.add(np.arange(G), o_g + np.arange(G), -1.0)
    eq.close(np.zeros(G))
    # Per-phase headroom per period, on the groups.
    for phase in range(3):
        sel = np.nonzero(group_bits[:, phase])[0]
        ub.add(group_k[sel], o_g + sel, 1.0)
        ub.close(np.maximum(p.headroom_a[:, phase], 0.0))
    # Remaining energy per port that cannot discharge.
    plain = np.nonzero(want & ~bidir)[0]
    port_row = np.full(n, -1)
    port_row[plain] = np.arange(len(plain))
    on = port_row[idx_i] >= 0
    ub.add(port_row[idx_i[on]], np.nonzero(on)[0], kwh_per_a[idx_i[on], idx_k[on]])
    ub.close(p.remaining_kwh[plain])
    if peak:
        # sum over groups of (phases x V / 1000) g - peak <= 0, per period [kW].
        ub.add(group_k, o_g + np.arange(G), group_bits.sum(axis=1) * p.phase_voltage / 1000.0)
        ub.add(np.arange(K), np.full(K, o_P), -1.0)
        ub.close(np.zeros(K))
    if v2g is not None and nb:
        dmax = np.asarray(v2g.discharge_max_a, dtype=float)
        e0 = np.asarray(v2g.stored_kwh, dtype=float)
        floor = np.minimum(np.asarray(v2g.floor_kwh, dtype=float), e0)
        cap = np.maximum(np.asarray(v2g.capacity_kwh, dtype=float), e0)
        eta_c, eta_d = v2g.eta_charge, v2g.eta_discharge
        bounds[o_x:o_g, 1] = dmax[xi] * share[xi, xk]
        c[o_x:o_g] = value(xi, xk)  # discharging gives the charge's value back (and earns the price)
        # Stored energy: E[c] - E[c-1] - sum over the periods since (eta_c e r - e x / eta_d) = 0 (E0 first).
        cp_index = np.full((n, K), -1)
        cp_index[cp_port_a, cp_k_a] = np.arange(S)
        # The checkpoint a period's energy lands in: the first checkpoint of the port at or after it.
        nxt = np.full((n, K + 1), -1)
        nxt[:, K] = -1
        for k in range(K - 1, -1, -1):
            nxt[:, k] = np.where(cp_index[:, k] >= 0, cp_index[:, k], nxt[:, k + 1])
        rb = bidir[idx_i]
        eq.add(nxt[idx_i[rb], idx_k[rb]], np.nonzero(rb)[0], -eta_c * kwh_per_a[idx_i[rb], idx_k[rb]])
        eq.add(nxt[xi, xk], o_x + np.arange(mx), kwh_per_a[xi, xk] / eta_d)
        eq.add(np.arange(S), o_E + np.arange(S), 1.0)
        first = np.ones(S, dtype=bool)
        first[1:] = cp_port_a[1:] != cp_port_a[:-1]
        later = np.nonzero(~first)[0]
        eq.add(later, o_E + later - 1, -1.0)
        eq.close(np.where(first, e0[cp_port_a], 0.0))
        bounds[o_E:o_s, 0] = floor[cp_port_a]
        bounds[o_E:o_s, 1] = cap[cp_port_a]
        # Minimum departure energy: -E[last] - shortfall <= -E_min.
        last_cp = np.nonzero(np.append(cp_port_a[1:] != cp_port_a[:-1], True))[0]
        big = v2g.shortfall_cost
        if big is None:
            per_kwh = (2.0 * p.energy_value + p.quick_weight + v2g.export_value + float(np.abs(p.price).max(initial=0.0))
                       + p.peak_weight * 3600.0 / float(dur.min()))
            big = 100.0 * per_kwh
        c[o_s:o_X] = big
        ub.add(np.arange(nb), o_E + last_cp, -1.0)
        ub.add(np.arange(nb), o_s + np.arange(nb), -1.0)
        ub.close(-np.asarray(v2g.min_departure_kwh, dtype=float)[ports_b])
        # A port charges and discharges in one period only by sharing its time: r / u + x / d <= share.
        cell = {(int(i), int(k)): j for j, (i, k) in enumerate(zip(idx_i[rb], idx_k[rb]))}
        rj = np.nonzero(rb)[0]
        both = [(j, cell[(int(i), int(k))]) for j, (i, k) in enumerate(zip(xi, xk)) if (int(i), int(k)) in cell]
        if both:
            jx, jr = np.asarray(both, dtype=int).T
            jr = rj[jr]
            rows = np.arange(len(jx))
            ub.add(rows, jr, 1.0 / p.ev_max_a[idx_i[jr]])
            ub.add(rows, o_x + jx, 1.0 / dmax[xi[jx]])
            ub.close(share[xi[jx], xk[jx]])
        # Export per requested period: gross discharge <= request, and the valued export X <= the net of the
        # bidirectional EVs (discharge less their charging) [kW].
        slot = np.searchsorted(export_k, xk)
        ub.add(slot, o_x + np.arange(mx), charging[xi] * p.phase_voltage / 1000.0)
        ub.close(export[export_k])
        ub.add(np.arange(nX), o_X + np.arange(nX), 1.0)
        ub.add(slot, o_x + np.arange(mx), -charging[xi] * p.phase_voltage / 1000.0)
        rx = rb & np.isin(idx_k, export_k)
        ub.add(np.searchsorted(export_k, idx_k[rx]), np.nonzero(rx)[0], charging[idx_i[rx]] * p.phase_voltage / 1000.0)
        ub.close(np.zeros(nX))
        bounds[o_X:o_P, 1] = export[export_k]
        c[o_X:o_P] = -v2g.export_value * dur[export_k] / 3600.0
    if p.smoothness > 0:
        # d_j >= r_j - r_prev(j) and d_j >= r_prev(j) - r_j, with r_prev of the same port one period earlier.
        order = np.lexsort((idx_k, idx_i))
        prev = np.full(m, -1)
        same = (idx_i[order][1:] == idx_i[order][:-1]) & (idx_k[order][1:] == idx_k[order][:-1] + 1)
        prev[order[1:][same]] = order[:-1][same]
        j = np.nonzero(prev >= 0)[0]
        o_d = n_var
        n_var += len(j)
        c = np.concatenate((c, np.full(len(j), p.smoothness)))
        bounds = np.vstack((bounds, np.tile([0.0, np.inf], (len(j), 1))))
        for sign in (1.0, -1.0):
            ub.add(np.arange(len(j)), j, sign)
            ub.add(np.arange(len(j)), prev[j], -sign)
            ub.add(np.arange(len(j)), o_d + np.arange(len(j)), -1.0)
            ub.close(np.zeros(len(j)))
    if p.fair_kwh is not None:
        # y[i, j] <= tranche j's energy, and sum_j y[i, j] <= the energy planned for port i (net of discharge).
        reach = np.asarray(p.fair_kwh, dtype=float).reshape(n, -1)
        tranches = np.where(want[:, None], np.maximum(np.diff(reach, axis=1, prepend=0.0), 0.0), 0.0)
        fi, fj = np.nonzero(tranches > 1e-9)
        ports_f = np.unique(fi)
        fair_row = np.full(n, -1)
        fair_row[ports_f] = np.arange(len(ports_f))
        o_y = n_var
        n_var += len(fi)
        most = most_per_kwh(p.energy_value, p.quick_weight)
        c = np.concatenate((c, -p.fair_weight * most * FAIR_RATIO ** (tranches.shape[1] - 1 - fj)))
        bounds = np.vstack((bounds, np.stack((np.zeros(len(fi)), tranches[fi, fj]), axis=1)))
        ub.add(fair_row[fi], o_y + np.arange(len(fi)), 1.0)
        mine = fair_row[idx_i] >= 0
        ub.add(fair_row[idx_i[mine]], np.nonzero(mine)[0], -kwh_per_a[idx_i[mine], idx_k[mine]])
        if mx:
            gives = fair_row[xi] >= 0
            ub.add(fair_row[xi[gives]], o_x + np.nonzero(gives)[0], kwh_per_a[xi[gives], xk[gives]])
        ub.close(np.zeros(len(ports_f)))
    if p.current_a is not None:
        # h_i >= r[i, 0] - s_i and h_i >= s_i - r[i, 0] for the ports that may charge in the first period.
        j = np.nonzero(idx_k == 0)[0]
        s_now = np.asarray(p.current_a, dtype=float)[idx_i[j]]
        o_h = n_var
        n_var += len(j)
        c = np.concatenate((c, p.change_cost * kwh_per_a[idx_i[j], 0]))
        bounds = np.vstack((bounds, np.tile([0.0, np.inf], (len(j), 1))))
        for sign in (1.0, -1.0):
            ub.add(np.arange(len(j)), j, sign)
            ub.add(np.arange(len(j)), o_h + np.arange(len(j)), -1.0)
            ub.close(sign * s_now)
    A_ub, b_ub = ub.matrix(n_var)
    A_eq, b_eq = eq.matrix(n_var)
    A = sp.vstack([M for M in (A_ub, A_eq) if M is not None]).tocsc()
    row_lo = np.concatenate([np.full(0 if b_ub is None else len(b_ub), -np.inf)] + ([] if b_eq is None else [b_eq]))
    row_hi = np.concatenate([b for b in (b_ub, b_eq) if b is not None])
    working = None
    blocks = np.arange(K) // COARSEN
    if m >= SIFT_COLUMNS and K >= 2 * COARSEN:
        # A coarse plan of the same problem says which cells the fine one charges in.
        rough = plan(_coarse(p, dur, blocks))
        if rough.status == "optimal":
            working = np.ones(n_var, dtype=bool)
            working[:m] = rough.rates_a[idx_i, blocks[idx_k]] > 1e-9
    solution, status = _solve(c, A, row_lo, row_hi, bounds, working)
    if solution is None:
        return Plan(p.start, rates, status, wallclock.perf_counter() - t0, period_start, end, discharge,
                    None if v2g is None else np.zeros(K), None, None if v2g is None else np.zeros(n))
    rates[idx_i, idx_k] = np.maximum(solution[:m], 0.0)
    if v2g is None:
        return Plan(p.start, rates, status, wallclock.perf_counter() - t0, period_start, end,
                    objective=float(c @ solution))
    assert discharge is not None
    discharge[xi, xk] = np.maximum(solution[o_x:o_g], 0.0)
    exported = np.zeros(K)
    exported[export_k] = np.maximum(solution[o_X:o_P], 0.0)
    shortfall = np.zeros(n)
    shortfall[ports_b] = np.maximum(solution[o_s:o_X], 0.0)
    return Plan(p.start, rates, status, wallclock.perf_counter() - t0, period_start, end, discharge, exported,
                _stored(p, v2g, bidir, rates, discharge, dur), shortfall, float(c @ solution))


FAIR_RATIO = 4.0
"""How much more a kWh of a fairness tranche is worth than one of the next: more than the three to one
in energy per A of a phase between a three-phase and a single-phase EV, so that a share is reached
whatever a session's phases."""

def most_per_kwh(energy_value: float, quick_weight: float, tranches: int = 0, fair_weight: float = 1.0) -> float:
    """The most a charged kWh is worth in a plan with these weights [per kWh]: urgency 1, charged now, and in
    the first of ``tranches`` fairness tranches (``PlanInput.fair_kwh``)."""
    base = 2.0 * energy_value + quick_weight
    return base * (1.0 + (fair_weight * FAIR_RATIO ** (tranches - 1) if tranches else 0.0))


SIFT_COLUMNS = 10_000
"""Charging cells from which a plan over many periods is solved by sifting (below: in one solve)."""
COARSEN = 3
"""Periods merged into one block of the coarse plan that starts the sifting (which may be sifted in turn)."""


def _coarse(p: PlanInput, dur: Array, blocks: Array) -> PlanInput:
    """The charging part of ``p`` on coarse blocks: duration-weighted price and previous rates, the least
    headroom of the block; no V2G, no smoothness (it only has to say where charging goes)."""
    n_blocks = int(blocks.max()) + 1
    block_s = np.bincount(blocks, dur, n_blocks)
    headroom = np.full((n_blocks, 3), np.inf)
    np.minimum.at(headroom, blocks, np.asarray(p.headroom_a, dtype=float))
    previous = None
    if p.previous_a is not None:
        previous = np.zeros((len(p.ev_max_a), n_blocks))
        np.add.at(previous.T, blocks, (np.asarray(p.previous_a) * dur).T)
        previous /= block_s
    return replace(p, price=np.bincount(blocks, np.asarray(p.price) * dur, n_blocks) / block_s,
                   headroom_a=headroom, durations_s=block_s, previous_a=previous, smoothness=0.0, v2g=None)


def _highs() -> highspy.Highs:
    """A silent HiGHS instance. The first one a process creates prints the library's banner on standard
    output from C++, before any option can be set; it goes to /dev/null instead."""
    global _banner_shown
    if _banner_shown:
        highs = highspy.Highs()
    else:
        sys.stdout.flush()
        saved = os.dup(1)
        try:
            with open(os.devnull, "w") as null:
                os.dup2(null.fileno(), 1)
                highs = highspy.Highs()
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        _banner_shown = True
    highs.setOptionValue("output_flag", False)
    return highs


_banner_shown = False


def _solve(c: Array, A: sp.csc_matrix, row_lo: Array, row_hi: Array, bounds: Array,
           working: Array | None) -> tuple[Array | None, str]:
    """Minimise ``c x`` subject to ``row_lo <= A x <= row_hi`` and ``bounds`` with HiGHS's simplex; returns
    the solution (None if there is none) and ``optimal`` or why not.

    With ``working`` (a mask of columns) the LP is solved by sifting: first on the working columns only
    (the others held at their lower bound, 0), then every column whose reduced cost at that solution's
    duals says it would improve the objective is added and the LP re-solved from the last basis with the
    primal simplex, until none would. The result is an optimum of the whole LP."""
    highs = _highs()
    # Presolve off: on these LPs HiGHS's presolve removes little and costs more than it saves (measured).
    highs.setOptionValue("presolve", "off")
    empty_i, empty_v = np.zeros(0, dtype=np.int32), np.zeros(0)
    highs.addRows(len(row_lo), row_lo, row_hi, 0, empty_i, empty_i, empty_v)
    inside = np.ones(len(c), dtype=bool) if working is None else working.copy()

    def add(columns: Array) -> None:
        block = A[:, columns]
        highs.addCols(len(columns), c[columns], bounds[columns, 0], bounds[columns, 1], block.nnz,
                      block.indptr[:-1].astype(np.int32), block.indices.astype(np.int32), block.data)

    columns = np.nonzero(inside)[0]
    add(columns)
    A_t = None if working is None else A.T.tocsr()
    while True:
        highs.run()
        if highs.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            return None, f"failed ({highs.modelStatusToString(highs.getModelStatus())})"
        if A_t is None:
            break  # every column was in: nothing to price
        reduced = c - A_t @ np.asarray(highs.getSolution().row_dual)
        better = np.nonzero(~inside & (reduced < -1e-7))[0]
        if not len(better):
            break
        inside[better] = True
        columns = np.concatenate((columns, better))
        add(better)
        highs.setOptionValue("simplex_strategy", 4)  # primal: the basis stays feasible as columns come in
    solution = np.zeros(len(c))
    solution[columns] = np.asarray(highs.getSolution().col_value)
    return solution, "optimal"


def _stored(p: PlanInput, v2g: V2GInput, bidir: Array, rates: Array, discharge: Array, dur: Array) -> Array:
    """(ports, K + 1) stored energy at each period boundary under a plan [kWh]; nan where not bidirectional."""
    kwh_per_a = p.charge_count[:, None] * p.phase_voltage * dur[None, :] / 3.6e6
    step = (v2g.eta_charge * rates - discharge / v2g.eta_discharge) * kwh_per_a
    stored = np.asarray(v2g.stored_kwh, dtype=float)[:, None] + np.concatenate((np.zeros((len(bidir), 1)), np.cumsum(step, axis=1)), axis=1)
    return np.where(bidir[:, None], stored, np.nan)


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
