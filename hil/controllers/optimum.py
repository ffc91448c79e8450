"""The offline optimum: what any controller could achieve with perfect knowledge of the day, as LPs
(HiGHS) over every session of a scenario. The yardstick the reference controllers are measured against.

Units: seconds, A per phase, kWh, V.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from hil.controllers.observation import Array
from hil.controllers.planner import PERIOD_S
from hil.scenarios import Scenario


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
