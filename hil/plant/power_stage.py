"""A programmable DC power stage: set points, slew-limited output, CV/CC/CP, latching protections."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Protection(str, Enum):
    """Latching protection causes, common to every vendor profile."""

    OVER_VOLTAGE = "OV"
    OVER_CURRENT = "OC"
    OVER_POWER = "OP"
    OVER_TEMPERATURE = "OT"
    INHIBIT = "INH"
    POWER_FAIL = "PF"
    WATCHDOG = "WDOG"


class Regulation(str, Enum):
    OFF = "OFF"
    CV = "CV"
    CC = "CC"
    CP = "CP"


@dataclass
class PowerStage:
    """Output of one power source feeding one charging port.

    Units: V, A, W, seconds; slew rates in V/s and A/s.
    """

    rated_voltage: float = 1000.0
    rated_current: float = 200.0
    rated_power: float = 100_000.0
    voltage_setpoint: float = 0.0
    current_setpoint: float = 0.0
    power_setpoint: float = 100_000.0
    output_on: bool = False
    voltage_slew: float = 2000.0
    current_slew: float = 500.0
    ovp_level: float = 1100.0
    ocp_level: float = 220.0
    ocp_enabled: bool = True
    ocp_on_cc: bool = False
    """Over-current protection trips when the stage enters constant current (Keysight semantics)."""
    opp_level: float = 110_000.0
    voltage: float = 0.0
    """Output voltage now [V]."""
    current: float = 0.0
    """Output current now [A], positive into the load."""
    regulation: Regulation = Regulation.OFF
    tripped: set[Protection] = field(default_factory=set)
    pilot_ignored_w: float | None = None
    """Fault: the load takes this much power whatever the power set point says (an AC EV that ignores its
    control pilot, emulated on a DC stage) [W]; the current set point still bounds it. ``None``: healthy."""
    reaction_s: float = 0.0
    """Fault: the load follows a new power set point this much later (an AC EV slow to answer its pilot:
    IEC 61851-1 allows 5 s) [s]."""
    _followed: list[tuple[float, float]] = field(default_factory=list, repr=False)
    """(time it applies, power set point [W]) of the set points the load has not followed yet; the first
    entry is the one it follows now."""
    _time: float = field(default=0.0, repr=False)

    @property
    def power(self) -> float:
        """Output power now [W]."""
        return self.voltage * self.current

    def trip(self, cause: Protection) -> None:
        """Latch a protection: the output switches off until ``clear_protection()``."""
        self.tripped.add(cause)
        self.output_on = False

    def clear_protection(self) -> None:
        self.tripped.clear()

    def step(self, dt: float, load_ocv: float | None, load_resistance: float) -> None:
        """Advance ``dt`` seconds into a load.

        ``load_ocv`` is the open-circuit voltage of a battery behind a closed contactor (``None`` when no
        load is connected); ``load_resistance`` its internal resistance [ohm].
        """
        self._time += dt
        self._follow()
        if not self.output_on or self.tripped:
            self.regulation = Regulation.OFF
            self.current = _approach(self.current, 0.0, self.current_slew * dt)
            self.voltage = _approach(self.voltage, 0.0, self.voltage_slew * dt)
            if self.current == 0.0 or load_ocv is None:
                self.current = 0.0
        elif load_ocv is None:
            self.regulation = Regulation.CV
            self.current = 0.0
            self.voltage = _approach(self.voltage, self.voltage_setpoint, self.voltage_slew * dt)
        else:
            _, target_i, self.regulation = self._operating_point(load_ocv, load_resistance)
            self.current = _approach(self.current, target_i, self.current_slew * dt)
            self.voltage = load_ocv + self.current * load_resistance
        self._check_protections()

    def _operating_point(self, ocv: float, r: float) -> tuple[float, float, Regulation]:
        v_set = self.voltage_setpoint
        i_cv = max((v_set - ocv) / r, 0.0)
        i_limit = self.current_setpoint
        regulation = Regulation.CV
        current = i_cv
        if current > i_limit:
            current, regulation = i_limit, Regulation.CC
        v_at = ocv + current * r
        p = self._followed[0][1] if self._followed else self.power_setpoint
        p = p if self.pilot_ignored_w is None else self.pilot_ignored_w
        if v_at * current > p:
            # Solve (ocv + i r) i = P for i.
            current = (-ocv + (ocv * ocv + 4 * r * p) ** 0.5) / (2 * r)
            regulation = Regulation.CP
        return ocv + current * r, current, regulation

    def _follow(self) -> None:
        """Queue a changed power set point ``reaction_s`` ahead; drop the ones a later one has replaced."""
        if not self._followed or self._followed[-1][1] != self.power_setpoint:
            self._followed.append((self._time + self.reaction_s, self.power_setpoint))
        while len(self._followed) > 1 and self._followed[1][0] <= self._time:
            self._followed.pop(0)

    def _check_protections(self) -> None:
        if self.voltage > self.ovp_level:
            self.trip(Protection.OVER_VOLTAGE)
        if self.ocp_enabled and self.current > self.ocp_level:
            self.trip(Protection.OVER_CURRENT)
        if self.ocp_on_cc and self.regulation is Regulation.CC:
            self.trip(Protection.OVER_CURRENT)
        if self.power > self.opp_level:
            self.trip(Protection.OVER_POWER)
        if self.tripped:
            self.voltage, self.current = 0.0, 0.0


def _approach(value: float, target: float, max_step: float) -> float:
    if abs(target - value) <= max_step:
        return target
    return value + max_step if target > value else value - max_step
