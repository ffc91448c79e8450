"""The power source driver: exact exchanges against a recorded protocol, and against the emulator."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from hil.emulators.loop import EmulatorLoop
from hil.emulators.scpi import ScpiEmulator
from hil.instruments.errors import (
    InstrumentProtocolError, InstrumentReportedError, InstrumentUnreachable, ProtectionTripped, SoftLimitError,
)
from hil.instruments.limits import SoftLimits
from hil.instruments.power_source import PowerSource
from hil.plant import Plant

LIMITS = SoftLimits(voltage=500.0, current=125.0, power=50_000.0, ramp=2000.0)


class Exchange:
    """A fake VISA session that expects an exact sequence of writes and serves the recorded replies."""

    def __init__(self, script: list[tuple[str, str | None]]) -> None:
        self.script = list(script)
        self.pending: list[str] = []

    def write(self, message: str) -> None:
        assert self.script, f"unexpected write {message!r}"
        expected, reply = self.script.pop(0)
        assert message == expected
        if reply is not None:
            self.pending.append(reply)

    def read(self) -> str:
        assert self.pending, "read without a reply pending"
        return self.pending.pop(0)

    def close(self) -> None:
        pass

    def done(self) -> None:
        assert not self.script, f"expected but not sent: {self.script}"


def scripted(profile: str, script: list[tuple[str, str | None]]) -> tuple[PowerSource, Exchange]:
    io = Exchange(script)
    return PowerSource("TCPIP0::bench::5025::SOCKET", profile, LIMITS, name="ps", transport=io), io


# -- exact exchanges -----------------------------------------------------------------------------------
def test_keysight_open_set_points_and_output_exact() -> None:
    source, io = scripted("keysight_rp7900", [
        ("*CLS", None),
        ("OUTP?", "0"),
        ("CURR 40;:CURR?;*ESR?", "+4.000000E+01;0"),
        ("VOLT 400;:VOLT?;*ESR?", "+4.000000E+02;0"),
        ("STAT:QUES:COND?", "0"),
        ("OUTP ON;:OUTP?;*ESR?", "1;0"),
        ("MEAS:VOLT?;:MEAS:CURR?;:MEAS:POW?", "+4.000000E+02;+3.990000E+01;+1.596000E+04"),
    ])
    source.open()
    source.set_current(40)
    source.set_voltage(400)
    source.output(True)
    m = source.measure()
    assert (m.voltage, m.current, m.power) == (400.0, 39.9, 15960.0)
    io.done()


def test_ea_takes_remote_and_parses_units_exact() -> None:
    source, io = scripted("ea_psb10000", [
        ("SYST:LOCK ON", None),
        ("*CLS", None),
        ("OUTP?", "OFF"),
        ("SOUR:VOLT 48;:SOUR:VOLT?;*ESR?", "48.00V;0"),
        ("MEAS:ARR?", "47.98V, -2.50A, -119.95W"),
        ("SYST:LOCK OFF", None),
    ])
    source.open()
    source.set_voltage(48)
    m = source.measure()
    assert (m.voltage, m.current, m.power) == (47.98, -2.5, -119.95)
    source.close()
    io.done()


def test_protections_are_set_above_the_soft_limits_exact() -> None:
    source, io = scripted("ea_psb10000", [
        ("SOUR:VOLT:PROT 550;:SOUR:VOLT:PROT?;*ESR?", "550.00V;0"),
        ("SOUR:CURR:PROT 137.5;*ESR?", "0"),
        ("SOUR:POW:PROT 55000;*ESR?", "0"),
    ])
    source.configure_protections()
    io.done()


def test_soft_limit_refused_before_the_wire() -> None:
    source, io = scripted("keysight_rp7900", [])
    with pytest.raises(SoftLimitError, match="soft limit"):
        source.set_voltage(501)
    with pytest.raises(SoftLimitError):
        source.set_current(-1)
    assert list(source.transcript) == []
    io.done()


def test_instrument_error_is_raised_typed_with_its_code() -> None:
    source, io = scripted("keysight_rp7900", [
        ("VOLT 400;:VOLT?;*ESR?", "+0.000000E+00;16"),
        ("SYST:ERR?", '-222,"Data out of range"'),
        ("SYST:ERR?", '+0,"No error"'),
    ])
    with pytest.raises(InstrumentReportedError) as err:
        source.set_voltage(400)
    assert err.value.code == -222 and "ps (TCPIP0::bench::5025::SOCKET)" in str(err.value)
    io.done()


def test_value_silently_not_kept_is_caught_by_read_back() -> None:
    source, io = scripted("ea_psb10000", [("SOUR:VOLT 480;:SOUR:VOLT?;*ESR?", "20.00V;0")])
    with pytest.raises(InstrumentReportedError, match="kept 20"):
        source.set_voltage(480)
    io.done()


def test_output_refused_while_protection_latched_exact() -> None:
    source, io = scripted("keysight_rp7900", [("STAT:QUES:COND?", "17")])  # OV + OT
    with pytest.raises(ProtectionTripped) as err:
        source.output(True)
    assert err.value.causes == ["OT", "OV"]
    io.done()


def test_unparseable_reply_is_a_protocol_error() -> None:
    source, io = scripted("keysight_rp7900", [("MEAS:VOLT?;:MEAS:CURR?;:MEAS:POW?", "\x15#?garbled")])
    with pytest.raises(InstrumentProtocolError, match="expected 3 values"):
        source.measure()
    io.done()


def test_wrong_maker_is_reported_on_identify() -> None:
    source, io = scripted("ea_psb10000", [("*IDN?", "Keysight Technologies,RP7962A,MY1,B.01")])
    with pytest.raises(InstrumentProtocolError, match="profile 'ea_psb10000'"):
        source.identify()
    io.done()


# -- against the emulator --------------------------------------------------------------------------------
@pytest.fixture(params=["keysight_rp7900", "keysight_n7900", "ea_psb10000"])
def served(request: pytest.FixtureRequest, emulator_loop: EmulatorLoop, small_plant: Plant) -> Iterator[tuple[PowerSource, ScpiEmulator]]:
    emu = ScpiEmulator(small_plant, "p1", request.param)
    emulator_loop.run(emu.start())
    limits = SoftLimits(voltage=50.0, current=20.0, power=1000.0, ramp=500.0)
    source = PowerSource(emu.resource, request.param, limits, name="ps1", timeout_ms=500).open()
    yield source, emu
    source.safe_state()
    source.close()
    emulator_loop.run(emu.stop())


def test_driver_against_emulator_full_cycle(served: tuple[PowerSource, ScpiEmulator], small_plant: Plant) -> None:
    source, _ = served
    identity = source.identify()
    assert identity.model in source.profile.models
    source.configure_protections()
    source.set_current(2.0)
    source.set_voltage(24.0)
    assert source.voltage_setpoint() == pytest.approx(24.0)
    source.output(True)
    source.wait_for_voltage(24.0, tolerance=0.5, timeout=3.0)
    source.set_voltage(36.0)  # ramped while on
    source.wait_for_voltage(36.0, tolerance=0.5, timeout=3.0)
    assert source.errors() == []
    source.safe_state()
    assert not source.is_output_on() and source.measure().voltage < 60
    assert not small_plant.port("p1").stage.output_on


def test_protection_trips_latches_and_clears(served: tuple[PowerSource, ScpiEmulator]) -> None:
    source, _ = served
    source.configure_protections()
    source.set_current(1.0)
    source.set_voltage(20.0)
    source.output(True)
    source.wait_for_voltage(20.0, tolerance=1.0, timeout=3.0)
    source.set_ovp(10.0)
    source.wait_for_output_off(timeout=3.0)
    assert "OV" in source.protection_status()
    with pytest.raises(ProtectionTripped):
        source.output(True)
    source.configure_protections()
    source.clear_protection()
    assert source.protection_status() == set()
    source.output(True)
    assert source.is_output_on()


def test_unreachable_names_instrument_address_and_cause() -> None:
    source = PowerSource("TCPIP0::127.0.0.1::9::SOCKET", "keysight_rp7900", LIMITS, name="ps9", timeout_ms=300)
    with pytest.raises(InstrumentUnreachable, match=r"ps9 \(TCPIP0::127.0.0.1::9::SOCKET\): cannot open"):
        source.open()


def test_no_reply_times_out_with_a_clear_error_and_recovers(served: tuple[PowerSource, ScpiEmulator]) -> None:
    source, emu = served
    emu.faults.no_reply = True
    start = time.monotonic()
    with pytest.raises(InstrumentUnreachable, match="no reply to"):
        source.measure()
    assert time.monotonic() - start < 2.0
    emu.faults.clear()
    source.close()
    source.open()
    assert source.identify().model


def test_dropped_connection_reconnects(served: tuple[PowerSource, ScpiEmulator], emulator_loop: EmulatorLoop) -> None:
    source, emu = served
    for writer in list(emu._writers):
        emulator_loop.loop.call_soon_threadsafe(writer.close)
    time.sleep(0.1)
    assert source.identify().model  # reconnected transparently


def test_safe_state_after_energised_step(served: tuple[PowerSource, ScpiEmulator], small_plant: Plant) -> None:
    source, _ = served
    source.set_current(5.0)
    source.set_voltage(48.0)
    source.output(True)
    source.wait_for_voltage(48.0, tolerance=1.0, timeout=3.0)
    source.safe_state()
    assert source.current_setpoint() == 0.0, "current was not ramped down"
    assert small_plant.port("p1").stage.voltage < 60


@pytest.mark.asyncio
async def test_async_wrappers(served: tuple[PowerSource, ScpiEmulator]) -> None:
    source, _ = served
    await source.aset_current(1.0)
    await source.aset_voltage(12.0)
    await source.aoutput(True)
    assert (await source.ameasure()).voltage >= 0.0
    await source.asafe_state()
