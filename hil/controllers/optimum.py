"""The offline optimum: what any controller could achieve with perfect knowledge of the day, as LPs
(HiGHS) over every session of a scenario. The yardstick the reference controllers are measured against.

Units: seconds, A per phase, kWh, V.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from hil.controllers.observation import Array
from hil.controllers.planner import PERIOD_S
from hil.site.scenarios import Scenario, Session


@dataclass(frozen=True)
class _Day:
    """The LP skeleton both bounds share: one variable per (session, period) the EV is there, its current
    [A per phase] in that period; the per-phase headroom rows; the bounds."""

    t: Array
    """(K,) period starts [s]."""
    unmanaged: Array
    """(K,) unmanaged load per phase [A]."""
    idx_i: Array
    """Session of each variable."""
    idx_k: Array
    """Period of each variable."""
    nph: Array
    """(sessions,) phases each EV draws from."""
    energy: Array
    """kWh that 1 A of each variable delivers in its period."""
    phase_rows: tuple[Array, Array, Array]
    """Row, column and value entries of the 3 x K headroom rows (phase p, period k: row p K + k)."""
    room: Array
    """(K,) headroom per phase: the enforced limit less the unmanaged load and the controllers' margin [A]."""
    bounds: Array
    """(variables, 2): 0 to the EV's maximum times the share of the period it is there."""


def _day(scenario: Scenario, sessions: list[Session], period_s: float) -> _Day:
    from hil.site.simulation import limit_trace

    K = int(np.ceil(scenario.duration / period_s))
    t = np.arange(K) * period_s
    _, enforced, _, unmanaged = limit_trace(scenario, t)
    phases = np.zeros((len(sessions), 3))
    for k, s in enumerate(sessions):
        phases[k, list(s.phases)] = 1.0
    arrival = np.array([s.arrival for s in sessions])
    departure = np.array([s.departure for s in sessions])
    # Fraction of each period the EV is there: its current is capped at that share of its maximum.
    overlap = np.clip(np.minimum(departure[:, None], t[None, :] + period_s) - np.maximum(arrival[:, None], t[None, :]), 0.0, period_s)
    idx_i, idx_k = np.nonzero(overlap > 1e-9)
    nph = phases.sum(axis=1)
    on = [np.nonzero(phases[idx_i, p] > 0)[0] for p in range(3)]
    phase_rows = (np.concatenate([p * K + idx_k[c] for p, c in enumerate(on)]), np.concatenate(on),
                  np.ones(sum(len(c) for c in on)))
    room = np.maximum(enforced - unmanaged - (0.02 * enforced + 1.0), 0.0)  # the same safety margin controllers keep
    caps = np.array([s.max_current_a for s in sessions])[idx_i] * overlap[idx_i, idx_k] / period_s
    return _Day(t, unmanaged, idx_i, idx_k, nph, nph[idx_i] * scenario.phase_voltage * period_s / 3.6e6,
                phase_rows, room, np.stack([np.zeros(len(idx_i)), caps], axis=1))


def offline_optimum(scenario: Scenario, period_s: float = PERIOD_S) -> tuple[float, float]:
    """The most energy any controller could deliver with perfect knowledge of the day, and the total
    requested [kWh]: one LP over every session at ``period_s`` resolution, under the limit trace the
    simulator enforces (events included) less the safety margin every controller keeps (2 % + 1 A),
    each EV only inside its stay and never above its maximum. The 6 A floor is relaxed, so this is an
    upper bound."""
    sessions = list(scenario.sessions)
    d = _day(scenario, sessions, period_s)
    K, n, m = len(d.t), len(sessions), len(d.idx_i)
    rows, cols, vals = d.phase_rows
    # Energy per session <= its request.
    A = sp.csr_matrix((np.concatenate([vals, d.energy]), (np.concatenate([rows, 3 * K + d.idx_i]),
                       np.concatenate([cols, np.arange(m)]))), shape=(3 * K + n, m))
    b = np.concatenate([d.room, d.room, d.room, [s.energy_kwh for s in sessions]])
    result = linprog(-d.energy, A_ub=A, b_ub=b, bounds=d.bounds, method="highs")
    delivered = float(-result.fun) if result.status == 0 else float("nan")
    return delivered, float(sum(s.energy_kwh for s in sessions))


def offline_min_cost(scenario: Scenario, energy_kwh: Array, *, demand: bool = True, period_s: float = PERIOD_S) -> tuple[float, float]:
    """The cheapest way any controller could deliver ``energy_kwh`` (per session, in arrival order) with
    perfect knowledge of the day: one LP at ``period_s`` resolution under the same limit trace and margin
    as ``offline_optimum``, each EV only inside its stay and never above its maximum. Minimises the
    energy cost at the tariff plus, with ``demand``, the demand charge on the peak [kW]. Returns
    ``(energy cost, peak kW)``; (nan, nan) if the energy cannot be delivered."""
    sessions = sorted(scenario.sessions, key=lambda s: s.arrival)
    d = _day(scenario, sessions, period_s)
    K, n, m = len(d.t), len(sessions), len(d.idx_i)
    price = scenario.tariff.prices(d.t + period_s / 2, scenario.start_h)
    c = np.concatenate([price[d.idx_k] * d.energy, [scenario.tariff.demand_per_kw if demand else 0.0]])
    rows, cols, vals = d.phase_rows
    # Peak: site power (ports plus the unmanaged load) <= peak, per period.
    A = sp.csr_matrix((np.concatenate([vals, d.nph[d.idx_i] * scenario.phase_voltage / 1000.0, -np.ones(K)]),
                       (np.concatenate([rows, 3 * K + d.idx_k, 3 * K + np.arange(K)]),
                        np.concatenate([cols, np.arange(m), np.full(K, m)]))), shape=(4 * K, m + 1))
    b = np.concatenate([d.room, d.room, d.room, -3.0 * d.unmanaged * scenario.phase_voltage / 1000.0])
    A_eq = sp.csr_matrix((d.energy, (d.idx_i, np.arange(m))), shape=(n, m + 1))
    bounds = np.concatenate([d.bounds, [[0.0, np.inf]]])
    result = linprog(c, A_ub=A, b_ub=b, A_eq=A_eq, b_eq=np.asarray(energy_kwh, dtype=float), bounds=bounds, method="highs")
    if result.status != 0:
        return float("nan"), float("nan")
    return float(c[:m] @ result.x[:m]), float(result.x[m])
