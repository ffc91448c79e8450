"""The rig suite: every instrument answers, soft limits hold before the wire, protections latch, and every
source ends safe. Runs unchanged against emulated and real rigs (``--rig``)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from hil.instruments.errors import ProtectionTripped, SoftLimitError
from hil.rig.rig import Rig


def _names(rig: Rig, role: str) -> list[str]:
    return [i.name for i in getattr(rig.spec, role)]


def test_power_sources_identify(rig: Rig) -> None:
    for name in _names(rig, "power_sources"):
        identity = rig.power_source(name).identify()
        assert identity.maker and identity.model, f"{name}: *IDN? gave {identity.raw!r}"


def test_meters_identify_and_read(rig: Rig) -> None:
    for name in _names(rig, "meters"):
        meter = rig.meter(name)
        identity = meter.identify()
        assert identity.model, f"{name}: no model reported"
        values = meter.read()
        assert 45.0 <= values.frequency <= 65.0, f"{name}: frequency {values.frequency} Hz is implausible"
        assert all(v > 0 for v in values.voltage), f"{name}: phase voltages {values.voltage}"


def test_ev_simulators_heard_on_the_bus(rig: Rig) -> None:
    names = _names(rig, "ev_simulators")
    with ThreadPoolExecutor(max_workers=max(len(names), 1)) as pool:  # listen to every bus at once
        identities = dict(zip(names, pool.map(lambda n: rig.ev(n).identify(timeout=2.0), names)))
    for name, identity in identities.items():
        rates = {frame_id: hz for frame_id, hz in identity.frames_seen.items() if frame_id in (0x100, 0x101, 0x102)}
        assert set(rates) == {0x100, 0x101, 0x102}, f"{name}: EV frames seen {identity.frames_seen}"


def test_set_point_beyond_soft_limit_is_refused_before_the_wire(rig: Rig) -> None:
    for spec in rig.spec.power_sources:
        source = rig.power_source(spec.name)
        source.set_voltage(min(10.0, spec.limits.voltage))
        before = source.voltage_setpoint()
        with pytest.raises(SoftLimitError, match="soft limit"):
            source.set_voltage(spec.limits.voltage * 1.05)
        with pytest.raises(SoftLimitError):
            source.set_current(spec.limits.current + 1)
        with pytest.raises(SoftLimitError):
            source.set_power(spec.limits.power * 2)
        assert source.voltage_setpoint() == pytest.approx(before), f"{spec.name}: a refused set point reached the instrument"
        assert source.errors() == [], f"{spec.name}: the instrument saw an error"


def test_protection_trips_and_latches(power_source) -> None:  # type: ignore[no-untyped-def]
    """Over-voltage protection below the output voltage trips; the output stays off until cleared."""
    power_source.configure_protections()
    power_source.set_current(1.0)
    power_source.set_voltage(20.0)
    power_source.output(True)
    power_source.wait_for_voltage(20.0, tolerance=2.0, timeout=5.0)
    power_source.set_ovp(10.0)
    power_source.wait_for_output_off(timeout=5.0)
    assert "OV" in power_source.protection_status()
    with pytest.raises(ProtectionTripped):
        power_source.output(True)
    assert not power_source.is_output_on()
    power_source.configure_protections()
    power_source.clear_protection()
    assert power_source.protection_status() == set()
    power_source.output(True)
    assert power_source.is_output_on()


def test_safe_state_leaves_every_source_off(rig: Rig) -> None:
    for spec in rig.spec.power_sources:
        source = rig.power_source(spec.name)
        source.set_current(1.0)
        source.set_voltage(min(24.0, spec.limits.voltage))
        source.output(True)
    results = rig.safe_state()
    assert results == {s.name: None for s in rig.spec.power_sources}
    for spec in rig.spec.power_sources:
        source = rig.power_source(spec.name)
        assert not source.is_output_on(), f"{spec.name}: output still on"
        assert source.measure().voltage < 60.0, f"{spec.name}: output voltage not touch-safe"
