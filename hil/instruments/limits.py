"""Soft limits from the rig file, checked by drivers before anything goes on the wire."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SoftLimits:
    """Per-instrument limits. Units: V, A, W; ``ramp`` in V/s (voltage) and A/s (current)."""

    voltage: float
    current: float
    power: float
    ramp: float = 100.0
    protection_margin: float = 0.1
    """Hardware protections are set this fraction above the soft limits (0.1 = +10 %)."""

    def check(self, quantity: str, value: float) -> str | None:
        """Return why ``value`` of ``quantity`` ('voltage', 'current' or 'power') is refused, or None."""
        limit = getattr(self, quantity)
        if value < 0:
            return f"{quantity} {value:g} is negative"
        if value > limit:
            unit = {"voltage": "V", "current": "A", "power": "W"}[quantity]
            return f"{quantity} {value:g} {unit} exceeds the soft limit {limit:g} {unit}"
        return None
