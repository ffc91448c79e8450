"""EV traction battery: state of charge, open-circuit voltage, internal resistance, CC/CV taper."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Battery:
    """A lumped battery model.

    Units: capacity in kWh, voltages in V, currents in A, resistance in ohm, SoC as a fraction 0..1.
    """

    capacity_kwh: float = 40.0
    soc: float = 0.3
    max_voltage: float = 410.0
    """Highest terminal voltage the battery management accepts [V] (CHAdeMO 0x100 b4-5)."""
    empty_voltage: float = 320.0
    """Open-circuit voltage at SoC 0 [V]."""
    full_voltage: float = 400.0
    """Open-circuit voltage at SoC 1 [V]."""
    internal_resistance: float = 0.08
    max_current: float = 125.0
    """Largest charge current the battery asks for [A]."""
    taper_soc: float = 0.8
    """Above this SoC the current request falls linearly to 0 at SoC 1 (CC to CV)."""
    min_current: float = 0.0

    def ocv(self) -> float:
        """Open-circuit voltage [V] at the present SoC (linear between empty and full, a knee near 0)."""
        soc = min(max(self.soc, 0.0), 1.0)
        knee = 0.15 * (1.0 - min(soc / 0.1, 1.0))
        return self.empty_voltage + (self.full_voltage - self.empty_voltage) * (soc - knee * 0.1)

    def current_request(self) -> float:
        """Charge current the battery asks for now [A]: constant up to ``taper_soc``, then tapering."""
        if self.soc >= 1.0:
            return 0.0
        if self.soc <= self.taper_soc:
            return self.max_current
        return self.max_current * (1.0 - self.soc) / (1.0 - self.taper_soc)

    def terminal_voltage(self, current: float) -> float:
        """Terminal voltage [V] while ``current`` [A] flows into the battery."""
        return self.ocv() + current * self.internal_resistance

    def charge(self, current: float, dt: float) -> None:
        """Integrate ``current`` [A] (negative = discharge) over ``dt`` [s] into the SoC."""
        energy_kwh = self.ocv() * current * dt / 3.6e6
        self.soc = min(max(self.soc + energy_kwh / self.capacity_kwh, 0.0), 1.0)
