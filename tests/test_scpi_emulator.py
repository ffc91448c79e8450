"""The SCPI emulator on its real transport, from an independent client (a raw socket, and pyvisa)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from hil.emulators.loop import EmulatorLoop
from hil.emulators.scpi import ScpiEmulator
from hil.plant import Plant, Protection


@pytest.fixture
def emulator(emulator_loop: EmulatorLoop, small_plant: Plant) -> Iterator[ScpiEmulator]:
    emu = ScpiEmulator(small_plant, "p1", "keysight_rp7900", latency=0.0)
    emulator_loop.run(emu.start())
    yield emu
    emulator_loop.run(emu.stop())


class Raw:
    """A line-oriented raw socket client: what a vendor tool or netcat would do."""

    def __init__(self, port: int, timeout: float = 1.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buffer = b""

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\n")

    def ask(self, line: str) -> str:
        self.send(line)
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed")
            self.buffer += chunk
        reply, _, self.buffer = self.buffer.partition(b"\n")
        return reply.decode()

    def close(self) -> None:
        self.sock.close()


def test_binds_loopback_on_a_free_port(emulator: ScpiEmulator) -> None:
    assert emulator.host == "127.0.0.1" and emulator.port > 0
    assert emulator.resource == f"TCPIP0::127.0.0.1::{emulator.port}::SOCKET"


def test_raw_socket_idn_set_and_measure(emulator: ScpiEmulator, small_plant: Plant) -> None:
    raw = Raw(emulator.port)
    try:
        assert raw.ask("*IDN?").startswith("Keysight Technologies,RP7962A,")
        raw.send("SOURCE:VOLTAGE:LEVEL 48;:CURR 2;:OUTPUT:STATE ON")
        deadline = time.monotonic() + 2
        while float(raw.ask("MEAS:VOLT?")) < 47.9 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert float(raw.ask("MEASure:SCALar:VOLTage:DC?")) == pytest.approx(48.0)
        assert small_plant.port("p1").stage.output_on
        assert raw.ask("SYST:ERR?") == '+0,"No error"'
    finally:
        raw.close()


def test_pyvisa_socket_resource(emulator: ScpiEmulator) -> None:
    import pyvisa

    rm = pyvisa.ResourceManager("@py")
    inst = rm.open_resource(emulator.resource, read_termination="\n", write_termination="\n", timeout=1000)
    try:
        assert inst.query("*IDN?").startswith("Keysight")
        assert inst.query("VOLT 12.5;:VOLT?;*ESR?") == "+1.250000E+01;0"
    finally:
        inst.close()
        rm.close()


def test_latency_setting_delays_replies(emulator: ScpiEmulator) -> None:
    raw = Raw(emulator.port)
    try:
        emulator.latency = 0.05
        start = time.perf_counter()
        raw.ask("*IDN?")
        assert time.perf_counter() - start >= 0.05
    finally:
        raw.close()


def test_fault_no_reply_then_recovery(emulator: ScpiEmulator) -> None:
    raw = Raw(emulator.port, timeout=0.3)
    try:
        emulator.faults.no_reply = True
        with pytest.raises(socket.timeout):
            raw.ask("*IDN?")
        emulator.faults.clear()
        assert raw.ask("*OPC?") == "1"
    finally:
        raw.close()


def test_fault_garbage_reply(emulator: ScpiEmulator) -> None:
    raw = Raw(emulator.port)
    try:
        emulator.faults.garbage_reply = True
        reply = raw.ask("MEAS:VOLT?")
        with pytest.raises(ValueError):
            float(reply)
    finally:
        raw.close()


def test_fault_dropped_connection_refuses_until_cleared(emulator: ScpiEmulator) -> None:
    raw = Raw(emulator.port)
    emulator.faults.drop_connection = True
    with pytest.raises(ConnectionError):
        raw.ask("*IDN?")
    raw.close()
    again = Raw(emulator.port)
    with pytest.raises(ConnectionError):
        again.ask("*IDN?")
    again.close()
    emulator.faults.clear()
    ok = Raw(emulator.port)
    assert ok.ask("*OPC?") == "1"
    ok.close()


def test_fault_gain_and_frozen_measurements(emulator: ScpiEmulator, small_plant: Plant) -> None:
    raw = Raw(emulator.port)
    try:
        raw.send("VOLT 100;:CURR 1;:OUTP ON")
        time.sleep(0.2)
        emulator.faults.gain = 0.8
        assert float(raw.ask("MEAS:VOLT?")) == pytest.approx(80.0)
        emulator.faults.frozen = True
        raw.send("VOLT 50")
        time.sleep(0.2)
        assert float(raw.ask("MEAS:VOLT?")) == pytest.approx(80.0)
        emulator.faults.clear()
        assert float(raw.ask("MEAS:VOLT?")) == pytest.approx(50.0)
    finally:
        raw.send("OUTP OFF")
        raw.close()


def test_injected_trip_latches_with_its_status_bit(emulator: ScpiEmulator) -> None:
    raw = Raw(emulator.port)
    try:
        raw.send("VOLT 10;:OUTP ON")
        emulator.trip(Protection.OVER_TEMPERATURE)
        assert raw.ask("OUTP?") == "0"
        assert int(raw.ask("STAT:QUES:COND?")) == 1 << 4  # Keysight OT bit
        raw.send("OUTP ON")
        assert raw.ask("SYST:ERR?").startswith("-221,")
        raw.send("OUTP:PROT:CLE")
        assert raw.ask("STAT:QUES:COND?") == "0"
    finally:
        raw.close()


def test_watchdog_latches_output_off_without_io(emulator: ScpiEmulator) -> None:
    raw = Raw(emulator.port)
    try:
        raw.send("VOLT 10;:OUTP ON;:OUTP:PROT:WDOG:DEL 1;:OUTP:PROT:WDOG ON")
        assert raw.ask("OUTP?") == "1"
        time.sleep(1.3)
        assert raw.ask("OUTP?") == "0"
        assert int(raw.ask("STAT:QUES:COND?")) & 1 << 11
    finally:
        raw.close()


def test_ea_idle_timeout_closes_the_socket(emulator_loop: EmulatorLoop, small_plant: Plant) -> None:
    emu = ScpiEmulator(small_plant, "p2", "ea_psb10000", latency=0.0)
    emu.profile = emu.profile.model_copy(update={"idle_timeout_s": 0.3})
    emulator_loop.run(emu.start())
    raw = Raw(emu.port)
    try:
        assert raw.ask("OUTP?") == "OFF"
        time.sleep(0.5)
        with pytest.raises(ConnectionError):
            raw.ask("*IDN?")
    finally:
        raw.close()
        emulator_loop.run(emu.stop())
