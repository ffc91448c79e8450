"""The load-limit monitor: a reference meter sampled through its driver into a time series, with the limit
in force at every sample and the log of what happened (limit changes, arrivals, demand response, faults).

``Monitor(meter, clock)`` samples ``meter`` every ``1 / rate_hz`` seconds of the rig's clock (10 Hz of
simulated time on emulated rigs; real time on benches) in a thread of its own. Whoever changes the site's
situation tells it: ``set_limit`` when the enforced limit changes, ``log`` for everything else. ``judge``
runs the compliance check (``hil.compliance.check``) on what it saw; ``plot`` draws site current against
the limit and its tolerance band with the violations shaded.

Nothing is lost when a run dies: with ``trace`` set, every sample is appended to a CSV file and every event
to a JSON-lines file next to it as it happens.

Units: seconds of the rig's clock since the monitor started, A per phase.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from hil.clock import Clock
from hil.compliance.check import ComplianceReport, Event, band, check
from hil.instruments.energy_meter import EnergyMeter
from hil.instruments.errors import InstrumentError

log = logging.getLogger(__name__)

RATE_HZ = 10.0
"""Default sampling rate [1/s of the rig's clock]: the raw rate the compliance definition asks of rigs."""


@dataclass(frozen=True)
class LoggedEvent:
    """One entry of the event log."""

    time: float
    """[s] since the monitor started."""
    kind: str
    """``limit_step``, ``arrival``, ``departure``, ``dr_notice``, ``dr_start``, ``unmanaged_step``, ``fault``,
    ``fault_cleared``, ..."""
    detail: str = ""
    headroom: bool = False
    """True when it reduces headroom, so the compliance check gives the controller its settling time."""
    reduction_a: float | None = None
    """How much headroom it takes when the limit trace does not show it (a load step) [A per phase]."""
    settling_s: float | None = None
    """Its own settling time when it differs from the architecture's (demand response with notice: 0) [s]."""


class Monitor:
    """Samples one meter into ``(time, current per phase, limit per phase)`` rows."""

    def __init__(self, meter: EnergyMeter, clock: Clock, limit_a: float | tuple[float, float, float], *,
                 rate_hz: float = RATE_HZ, trace: Path | None = None) -> None:
        if rate_hz <= 0:
            raise ValueError(f"monitor rate must be positive, got {rate_hz} Hz")
        self.meter = meter
        self.clock = clock
        self.period = 1.0 / rate_hz
        self.trace = trace
        self.read_errors = 0
        """Samples lost because the reference meter did not answer."""
        self.last_error: str | None = None
        self._limit = np.broadcast_to(np.asarray(limit_a, dtype=float), (3,)).copy()
        self._rows: list[tuple[float, float, float, float, float, float, float]] = []
        self._events: list[LoggedEvent] = []
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0
        self._csv: IO[str] | None = None
        self._jsonl: IO[str] | None = None

    # -- life cycle ---------------------------------------------------------------------------------
    def start(self) -> Monitor:
        self._t0 = self.clock.now()
        if self.trace is not None:
            self.trace.parent.mkdir(parents=True, exist_ok=True)
            self._csv = self.trace.open("w", buffering=1)
            self._csv.write("t_s,i_l1_a,i_l2_a,i_l3_a,limit_l1_a,limit_l2_a,limit_l3_a\n")
            self._jsonl = self.trace.with_suffix(".events.jsonl").open("w", buffering=1)
        self._halt.clear()
        self._thread = threading.Thread(target=self._run, name=f"monitor-{self.meter.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._halt.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        for f in (self._csv, self._jsonl):
            if f is not None:
                f.close()
        self._csv = self._jsonl = None

    def __enter__(self) -> Monitor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def now(self) -> float:
        """[s] since the monitor started."""
        return self.clock.now() - self._t0

    # -- what happened ------------------------------------------------------------------------------
    def set_limit(self, limit_a: float | tuple[float, float, float], kind: str = "limit_step", detail: str = "", *,
                  settling_s: float | None = None) -> None:
        """The enforced site limit is now ``limit_a`` [A per phase]. A decrease is a headroom event."""
        new = np.broadcast_to(np.asarray(limit_a, dtype=float), (3,)).copy()
        at = self.now()  # before the change: every sample under the new limit is at or after the event
        with self._lock:
            lower = bool((new < self._limit - 1e-9).any())
            self._limit = new
        self.log(kind, detail or f"limit {_phases(new)} A", headroom=lower, settling_s=settling_s, at=at)

    def log(self, kind: str, detail: str = "", *, headroom: bool = False, reduction_a: float | None = None,
            settling_s: float | None = None, at: float | None = None) -> LoggedEvent:
        """Add an event at ``at`` (default: now) [s since the start]."""
        event = LoggedEvent(self.now() if at is None else at, kind, detail, headroom, reduction_a, settling_s)
        with self._lock:
            self._events.append(event)
            if self._jsonl is not None:
                self._jsonl.write(json.dumps(asdict(event)) + "\n")
        return event

    @property
    def events(self) -> list[LoggedEvent]:
        with self._lock:
            return list(self._events)

    def series(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(t [s], current (n, 3) [A], limit (n, 3) [A])`` of every sample so far."""
        with self._lock:
            rows = np.array(self._rows, dtype=float).reshape(-1, 7)
        return rows[:, 0], rows[:, 1:4], rows[:, 4:7]

    # -- judgement ----------------------------------------------------------------------------------
    def judge(self, settling_s: float | None, *, breaker_a: float | None = None, since: float = 0.0,
              voltage: float = 230.0) -> ComplianceReport:
        """The compliance check of everything sampled from ``since`` [s] on, with the architecture's settling
        time ``settling_s`` [s] (``None``: no allowance) and the breaker rating ``breaker_a`` [A]."""
        t, current, limit = self.series()
        keep = t >= since
        if not keep.any():
            raise ValueError(f"monitor of {self.meter.name}: no samples after {since:.1f} s to judge "
                             f"({self.read_errors} reads failed: {self.last_error})")
        events = [Event(e.time, e.kind, e.reduction_a, e.settling_s) for e in self.events if e.headroom and e.time >= since]
        return check(t[keep], current[keep], limit[keep], events, settling_s=settling_s, breaker_a=breaker_a,
                     voltage=voltage)

    def plot(self, title: str) -> Any:
        """A matplotlib figure: each phase's current against the limit and its band, violations shaded,
        events marked."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        t, current, limit = self.series()
        tol = band(limit)
        fig, ax = plt.subplots(figsize=(8, 3.6))
        ax.step(t, limit[:, 0], where="post", color="black", lw=1.2, label="limit")
        ax.fill_between(t, limit[:, 0], tol[:, 0], step="post", color="0.85", label="tolerance band")
        for k, colour in enumerate(("tab:blue", "tab:orange", "tab:green")):
            if len(t) and current[:, k].max() > 0.5:
                ax.plot(t, current[:, k], color=colour, lw=1.0, label=f"L{k + 1}")
        over = (current > tol).any(axis=1)
        if over.any():
            ax.fill_between(t, 0, 1, where=over, transform=ax.get_xaxis_transform(), color="red", alpha=0.2,
                            step="post", label="above band")
        for e in self.events:
            if e.kind not in ("arrival", "departure"):
                ax.axvline(e.time, color="0.4", ls=":", lw=0.8)
                ax.annotate(e.kind, (e.time, 1.0), xycoords=("data", "axes fraction"), fontsize=7, rotation=90,
                            va="top", ha="right", color="0.3")
        ax.set_xlabel("time [s]")
        ax.set_ylabel("site current [A per phase]")
        ax.set_title(title)
        ax.legend(loc="lower left", fontsize=7, ncol=3)
        fig.tight_layout()
        return fig

    # -- sampling -----------------------------------------------------------------------------------
    def _run(self) -> None:
        next_at = self.now()
        while not self._halt.is_set():
            try:
                reading = self.meter.read()
            except InstrumentError as exc:
                self.read_errors += 1
                self.last_error = str(exc)
                log.warning("monitor: %s", exc)
            else:
                t = self.now()
                with self._lock:
                    row = (t, *reading.current, *self._limit)
                    self._rows.append(row)  # type: ignore[arg-type]
                    if self._csv is not None:
                        self._csv.write(",".join(f"{x:.4f}" for x in row) + "\n")
            next_at += self.period
            wait = next_at - self.now()
            if wait > 0:
                self.clock.sleep(wait)
            else:
                next_at = self.now()  # fell behind: sample as fast as the meter answers, do not catch up


def _phases(values: np.ndarray) -> str:
    return "/".join(f"{v:g}" for v in values)
