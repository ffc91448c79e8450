"""Ports, the site feeder and the plant that steps them together.

The plant is the one source of truth behind every emulator: a power stage's output flows into the EV
battery behind it, each port's meter measures that flow, and the site meter measures the sum of the ports
plus the unmanaged load. Units: V, A, W, Wh, seconds.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

from hil.clock import Clock
from hil.plant.battery import Battery
from hil.plant.power_stage import PowerStage

PHASES = 3


@dataclass
class MeterReading:
    """What an AC energy meter sees at one point of the site, per phase L1..L3."""

    voltage: tuple[float, float, float]
    current: tuple[float, float, float]
    power: tuple[float, float, float]
    frequency: float
    import_wh: float
    export_wh: float

    @property
    def total_power(self) -> float:
        """Sum of the three phase powers [W]."""
        return sum(self.power)


@dataclass
class EnergyCounter:
    """Import and export energy [Wh] integrated from power."""

    import_wh: float = 0.0
    export_wh: float = 0.0

    def add(self, power_w: float, dt: float) -> None:
        if power_w >= 0:
            self.import_wh += power_w * dt / 3600.0
        else:
            self.export_wh += -power_w * dt / 3600.0


@dataclass
class EV:
    """An EV at a port: its battery, whether it is plugged in and whether its contactor is closed."""

    battery: Battery = field(default_factory=Battery)
    plugged_in: bool = True
    contactor_closed: bool = False
    phases: tuple[int, ...] = (1, 2, 3)
    """Phases the EV draws from on an AC port (1-based); the DC stage spreads over all three."""


@dataclass
class Port:
    """One charging port: a power stage, the EV plugged into it (if any), and its energy counter."""

    name: str
    stage: PowerStage = field(default_factory=PowerStage)
    ev: EV | None = field(default_factory=EV)
    counter: EnergyCounter = field(default_factory=EnergyCounter)

    def step(self, dt: float) -> None:
        ev = self.ev
        connected = ev is not None and ev.plugged_in and ev.contactor_closed
        if connected:
            assert ev is not None
            self.stage.step(dt, ev.battery.ocv(), ev.battery.internal_resistance)
            ev.battery.charge(self.stage.current, dt)
        else:
            self.stage.step(dt, None, 0.0)
        self.counter.add(self.stage.power if connected else 0.0, dt)

    def phase_power(self) -> tuple[float, float, float]:
        """AC power drawn per phase [W] to deliver the stage's output (the port meter's view)."""
        p = self.stage.power if self.ev is not None and self.ev.contactor_closed else 0.0
        phases = self.ev.phases if self.ev is not None else (1, 2, 3)
        return tuple(p / len(phases) if k + 1 in phases else 0.0 for k in range(PHASES))  # type: ignore[return-value]


@dataclass
class Site:
    """The feeder: nominal phase voltage, frequency, per-phase limit and unmanaged load."""

    phase_voltage: float = 230.0
    frequency: float = 50.0
    limit_a: float = 100.0
    """Per-phase current limit of the feeder [A]."""
    unmanaged_w: tuple[float, float, float] = (0.0, 0.0, 0.0)
    counter: EnergyCounter = field(default_factory=EnergyCounter)


class Plant:
    """All ports and the site, stepped together under one lock.

    Emulators read through ``reading()`` and mutate through ``with plant.lock:``; a ``PlantRunner``
    steps the plant in the background on a clock.
    """

    def __init__(self, ports: list[Port], site: Site | None = None) -> None:
        self.ports = {p.name: p for p in ports}
        self.site = site or Site()
        self.lock = threading.RLock()
        self.time = 0.0

    def port(self, name: str) -> Port:
        try:
            return self.ports[name]
        except KeyError:
            raise KeyError(f"no port named {name!r}; ports are {sorted(self.ports)}") from None

    def step(self, dt: float) -> None:
        """Advance every port and the site by ``dt`` seconds."""
        with self.lock:
            for port in self.ports.values():
                port.step(dt)
            self.site.counter.add(self.site_reading_unlocked().total_power, dt)
            self.time += dt

    def reading(self, point: str) -> MeterReading:
        """What a meter at ``point`` measures: a port name, or ``"site"`` for the feeder."""
        with self.lock:
            if point == "site":
                return self.site_reading_unlocked()
            port = self.port(point)
            return self._reading(port.phase_power(), port.counter)

    def site_reading_unlocked(self) -> MeterReading:
        power = list(self.site.unmanaged_w)
        for port in self.ports.values():
            for k, p in enumerate(port.phase_power()):
                power[k] += p
        return self._reading(tuple(power), self.site.counter)  # type: ignore[arg-type]

    def _reading(self, power: tuple[float, float, float], counter: EnergyCounter) -> MeterReading:
        v = self.site.phase_voltage
        return MeterReading(
            voltage=(v, v, v),
            current=tuple(math.copysign(abs(p) / v, p) for p in power),  # type: ignore[arg-type]
            power=power,
            frequency=self.site.frequency,
            import_wh=counter.import_wh,
            export_wh=counter.export_wh,
        )


class PlantRunner:
    """Steps a plant in a background thread so that simulated time follows ``clock``.

    ``period`` is the simulation step [simulated s]. Stop with ``stop()``; usable as a context manager.
    """

    def __init__(self, plant: Plant, clock: Clock, period: float = 0.01) -> None:
        self.plant = plant
        self.clock = clock
        self.period = period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="plant", daemon=True)

    def start(self) -> "PlantRunner":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)

    def __enter__(self) -> "PlantRunner":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        last = self.clock.now()
        real_period = self.period / self.clock.scale
        while not self._stop.wait(real_period):
            now = self.clock.now()
            elapsed = now - last
            last = now
            # Step in pieces no longer than the period so slews and protections stay accurate.
            while elapsed > 1e-9:
                dt = min(elapsed, self.period)
                self.plant.step(dt)
                elapsed -= dt
