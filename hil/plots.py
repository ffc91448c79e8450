"""PNG plots of a controller run: site current against the limit and its tolerance band with the
out-of-band windows shaded, current per port, energy delivered per port, and each session's charge
against its request.

Units on the axes: hours from the scenario start (seconds for runs shorter than two hours), A per phase,
kWh, % of the energy a driver asked for.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from hil.compliance.check import band, windows  # noqa: E402
from hil.site.simulation import RunResult  # noqa: E402

MAX_POINTS = 4000
"""Traces are reduced to this many points, keeping each bin's maximum so peaks stay visible."""


def _reduce(t: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(t) <= MAX_POINTS:
        return t, y
    size = int(np.ceil(len(t) / MAX_POINTS))
    cut = len(t) // size * size
    return t[:cut:size], y[:cut].reshape(-1, size, *y.shape[1:]).max(axis=1)


def site_current(run: RunResult, path: Path) -> Path:
    """Per-phase site current [A] against the enforced limit and the tolerance band; windows above the
    band are shaded red."""
    cuts = [time for time, _, _ in run.event_times]  # as the compliance check cuts its windows
    tw, current = windows(run.t, run.site_a, starts=cuts)
    _, limit = windows(run.t, run.limit_a, starts=cuts)
    tol = band(limit)
    above = (current > tol + 1e-9).any(axis=1)
    hours = tw / 3600.0
    fig, ax = plt.subplots(figsize=(11, 4.2))
    h, c = _reduce(hours, current)
    for phase in range(3):
        ax.plot(h, c[:, phase], lw=0.8, label=f"L{phase + 1}")
    hl, lim = _reduce(hours, limit[:, 0])
    _, top = _reduce(hours, tol[:, 0])
    ax.plot(hl, lim, color="black", lw=1.2, label="limit")
    ax.fill_between(hl, lim, top, color="grey", alpha=0.3, label="tolerance band")
    if above.any():
        ax.fill_between(hours, 0, 1, where=above, transform=ax.get_xaxis_transform(), color="red", alpha=0.15,
                        label="above band")
    ax.set(xlabel=f"hours from start ({run.scenario.start_h:g}:00)", ylabel="current per phase [A]",
           title=f"{run.scenario.name}: {run.controller} - site current against the limit")
    ax.legend(loc="upper right", ncols=3, fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _time_axis(t: np.ndarray) -> tuple[np.ndarray, str]:
    """Times [s] in hours for runs of hours, in seconds for short ones (a rig test), with the axis label."""
    if len(t) and t[-1] < 2 * 3600.0:
        return t, "time from start [s]"
    return t / 3600.0, "hours from start"


def port_currents(run: RunResult, path: Path) -> Path:
    """Current per port [A per phase], one line per port (sampled each minute in memory, each step on a rig)."""
    fig, ax = plt.subplots(figsize=(11, 4.2))
    when, label = _time_axis(run.port_t)
    for port in range(run.port_a.shape[1]):
        ax.plot(when, run.port_a[:, port], lw=0.8, label=f"port {port + 1}")
    if run.port_a.shape[1] <= 12:
        ax.legend(loc="upper right", fontsize=7, ncols=4)
    ax.set(xlabel=label, ylabel="current [A per phase]", title=f"{run.scenario.name}: {run.controller} - per-port current")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def port_energy(run: RunResult, path: Path) -> Path:
    """Energy delivered through each port so far [kWh]."""
    fig, ax = plt.subplots(figsize=(11, 4.2))
    when, label = _time_axis(run.port_t)
    for port in range(run.port_kwh.shape[1]):
        ax.plot(when, run.port_kwh[:, port], lw=0.8)
    ax.set(xlabel=label, ylabel="energy delivered [kWh]", title=f"{run.scenario.name}: {run.controller} - energy per port")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def session_charge(run: RunResult) -> np.ndarray:
    """(samples, ports) how far each port's EV has charged: energy delivered since its arrival as a share of
    what its driver asked for [%], NaN while the port is empty. The state of charge the site controls,
    in the scenario's terms (sessions ask for energy, not for a battery level)."""
    charge = np.full(run.port_kwh.shape, np.nan)
    for s in run.scenario.sessions:
        if s.port >= charge.shape[1] or s.energy_kwh <= 0:
            continue
        inside = (run.port_t >= s.arrival) & (run.port_t < s.departure)
        if not inside.any():
            continue
        at_arrival = np.interp(s.arrival, run.port_t, run.port_kwh[:, s.port])
        charge[inside, s.port] = (run.port_kwh[inside, s.port] - at_arrival) / s.energy_kwh * 100.0
    return charge


def state_of_charge(run: RunResult, path: Path) -> Path:
    """Each session's charge against its request [% of the energy asked for], one line per port; a line
    that reaches 100 % is a session fully met, one that ends below it left short."""
    fig, ax = plt.subplots(figsize=(11, 4.2))
    when, label = _time_axis(run.port_t)
    charge = session_charge(run)
    for port in range(charge.shape[1]):
        ax.plot(when, charge[:, port], lw=0.8, label=f"port {port + 1}")
    if np.nanmax(charge, initial=0.0) > 50.0:  # a short rig run charges a few %: zoom in on that instead
        ax.axhline(100.0, color="black", lw=1.0, ls="--", label="energy asked for")
    if charge.shape[1] <= 12:
        ax.legend(loc="lower right", fontsize=7, ncols=4)
    ax.set(xlabel=label, ylabel="charged [% of the request]",
           title=f"{run.scenario.name}: {run.controller} - each session's charge against its request")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def run_plots(run: RunResult, directory: Path) -> list[Path]:
    """All plots of a run into ``directory``, named after the controller."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = run.controller
    return [
        site_current(run, directory / f"{stem}-site.png"),
        port_currents(run, directory / f"{stem}-ports.png"),
        port_energy(run, directory / f"{stem}-energy.png"),
        state_of_charge(run, directory / f"{stem}-charge.png"),
    ]


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
