"""The physical side of an emulated charge point's connector: a port of the rig's plant.

The charge point emulator does not invent its meter values: it switches and limits the power stage of a
plant port and reads that port's energy counter, which is also what the port's Modbus meter serves. The
control seam plugs and unplugs the EV by changing the plant, and the charge point notices, as a real one
notices its cable.

Units: A (per phase, AC-equivalent), V, W, Wh.
"""

from __future__ import annotations

from dataclasses import dataclass

from hil.plant import EV, Plant

MEASURANDS = ("Energy.Active.Import.Register", "Power.Active.Import", "Current.Import", "Voltage", "SoC")
"""The OCPP measurands an outlet's meter reads (``Outlet.measure``)."""


@dataclass
class Outlet:
    """Connector ``port`` of ``plant``; ``max_current`` [A per phase] is the connector's own rating."""

    plant: Plant
    port: str
    max_current: float = 32.0
    phases: int = 3

    @property
    def plugged_in(self) -> bool:
        with self.plant.lock:
            ev = self.plant.port(self.port).ev
            return ev is not None and ev.plugged_in

    def plug(self, plugged: bool) -> None:
        """Plug the EV in or take it out (the control seam's plug_in / unplug)."""
        with self.plant.lock:
            port = self.plant.port(self.port)
            if port.ev is None:
                port.ev = EV(plugged_in=False)
            port.ev.plugged_in = plugged
            if not plugged:
                port.ev.contactor_closed = False
                port.stage.output_on = False

    def energize(self, limit_a: float | None) -> None:
        """Deliver energy at up to ``limit_a`` per phase (None: the connector's rating; 0: pause)."""
        limit = self.max_current if limit_a is None else max(0.0, min(limit_a, self.max_current))
        with self.plant.lock:
            port = self.plant.port(self.port)
            ev = port.ev
            if ev is None or not ev.plugged_in:
                return
            power = limit * self.plant.site.phase_voltage * self.phases
            battery = ev.battery
            stage = port.stage
            stage.voltage_setpoint = battery.max_voltage
            stage.current_setpoint = min(power / max(battery.ocv(), 1.0), battery.max_current)
            stage.power_setpoint = power
            ev.contactor_closed = True
            stage.output_on = power > 0

    def de_energize(self) -> None:
        """Stop delivering (the EV's contactor opens)."""
        with self.plant.lock:
            port = self.plant.port(self.port)
            port.stage.output_on = False
            port.stage.current_setpoint = 0.0
            if port.ev is not None:
                port.ev.contactor_closed = False

    @property
    def energized(self) -> bool:
        with self.plant.lock:
            return self.plant.port(self.port).stage.output_on

    def energy_wh(self) -> float:
        """The port meter's import register [Wh]."""
        return self.plant.reading(self.port).import_wh

    def power_w(self) -> float:
        """Active power now [W]."""
        return self.plant.reading(self.port).total_power

    def current_a(self) -> float:
        """Highest phase current now [A]."""
        return max(abs(i) for i in self.plant.reading(self.port).current)

    def voltage_v(self) -> float:
        return self.plant.reading(self.port).voltage[0]

    def soc(self) -> float | None:
        """The EV's state of charge [%], None without an EV."""
        with self.plant.lock:
            ev = self.plant.port(self.port).ev
            return None if ev is None else ev.battery.soc * 100.0

    def measure(self, measurand: str) -> tuple[float, str] | None:
        """The port meter's reading of an OCPP measurand with its unit (Wh, W, A, V, Percent), rounded to
        what a meter shows; None for a measurand it has no reading of (SoC without an EV, or unknown)."""
        if measurand == "Energy.Active.Import.Register":
            return round(self.energy_wh(), 1), "Wh"
        if measurand == "Power.Active.Import":
            return round(self.power_w(), 1), "W"
        if measurand == "Current.Import":
            return round(self.current_a(), 2), "A"
        if measurand == "Voltage":
            return round(self.voltage_v(), 1), "V"
        if measurand == "SoC":
            soc = self.soc()
            return None if soc is None else (round(soc, 1), "Percent")
        return None
