"""`hil emulate` serves the emulated rig to other processes over real sockets.

Each client here is independent of evhil's drivers: pyvisa-py, a plain pymodbus SunSpec scan,
python-can's socketcand interface, a raw SCPI socket.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import can
import pytest
import pyvisa
from pymodbus.client import ModbusTcpClient

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    rig_out = tmp_path_factory.mktemp("emulate") / "served.yaml"
    proc = subprocess.Popen(
        [sys.executable, "-m", "hil.cli", "emulate", str(ROOT / "rigs" / "emulated.yaml"), "--json",
         "--rig-out", str(rig_out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line, f"hil emulate printed nothing; stderr: {proc.stderr.read() if proc.stderr else ''}"
        info = json.loads(line)
        info["by_name"] = {i["name"]: i for i in info["instruments"]}
        info["rig_out"] = rig_out
        yield info
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail("hil emulate did not stop on SIGINT within 15 s")
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""


def _scpi(resource: str, *commands: str) -> list[str]:
    """Send SCPI lines on a raw socket; return the replies of the queries."""
    host, port = resource.split("::")[1], int(resource.split("::")[2])
    replies = []
    with socket.create_connection((host, port), timeout=3) as s:
        f = s.makefile("rw", newline="\n")
        for command in commands:
            f.write(command + "\n")
            f.flush()
            if command.rstrip().endswith("?"):
                replies.append(f.readline().strip())
    return replies


def test_json_line_names_every_emulated_instrument(served: dict[str, Any]) -> None:
    names = set(served["by_name"])
    assert {"ps1", "ps2", "ps3", "ps4", "m1", "site", "ev1", "ev4"} <= names
    for item in served["instruments"]:
        assert "127.0.0.1" in item["address"], item


def test_pyvisa_gets_idn(served: dict[str, Any]) -> None:
    rm = pyvisa.ResourceManager("@py")
    inst = rm.open_resource(served["by_name"]["ps1"]["resource"], read_termination="\n", write_termination="\n", timeout=3000)
    try:
        idn = inst.query("*IDN?")
    finally:
        inst.close()
        rm.close()
    assert idn.split(",")[0].strip().lower().startswith("keysight"), idn


def test_sunspec_scan_finds_models_1_and_203(served: dict[str, Any]) -> None:
    site = served["by_name"]["site"]
    client = ModbusTcpClient(site["host"], port=site["port"], timeout=2, retries=0)
    assert client.connect()
    try:
        marker = client.read_holding_registers(40000, count=2, device_id=site["unit"])
        assert not marker.isError(), marker
        assert marker.registers == [0x5375, 0x6E53]  # "SunS"
        address, models = 40002, []
        while True:
            header = client.read_holding_registers(address, count=2, device_id=site["unit"])
            model_id, length = header.registers
            if model_id == 0xFFFF:
                break
            models.append(model_id)
            address += 2 + length
            assert len(models) < 10
    finally:
        client.close()
    assert models[:2] == [1, 203]


def test_socketcand_sees_ev_frames_at_10_hz(served: dict[str, Any]) -> None:
    ev = served["by_name"]["ev1"]
    bus = can.Bus(interface="socketcand", host=ev["host"], port=ev["port"], channel=ev["channel"])
    counts: dict[int, int] = {}
    try:
        bus.recv(timeout=2.0)  # let the stream settle
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            msg = bus.recv(timeout=0.5)
            if msg is not None:
                counts[msg.arbitration_id] = counts.get(msg.arbitration_id, 0) + 1
    finally:
        bus.shutdown()
    for frame_id in (0x100, 0x101, 0x102):
        assert 16 <= counts.get(frame_id, 0) <= 24, counts  # 10 Hz over 2 s, with slack


def test_meter_matches_source_v_times_i_within_2_percent(served: dict[str, Any]) -> None:
    """Drive port p1 as another evhil would: through the drivers, over the rig file hil emulate wrote."""
    from hil.rig.loader import load_rig
    from hil.rig.rig import Rig

    with Rig(load_rig(served["rig_out"])) as rig:
        source, meter, ev = rig.power_source("ps1"), rig.meter("m1"), rig.ev("ev1")
        ev.plug_in()
        ev.start()
        source.set_current(40.0)
        source.set_voltage(400.0)
        source.output(True)
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                m = source.measure()
                if m.current > 35.0:
                    break
                time.sleep(0.1)
            assert m.current > 35.0, f"the EV draws no current: {m}"
            time.sleep(0.5)
            m = source.measure()
            p_meter = meter.read().total_power
            assert p_meter == pytest.approx(m.voltage * m.current, rel=0.02), (p_meter, m)
        finally:
            source.safe_state()
            ev.stop()


SIGINT_SUITE = textwrap.dedent(
    """\
    import time

    def test_energised_step(power_sources):
        for source in power_sources.values():
            source.set_current(2.0)
            source.set_voltage(48.0)
            source.output(True)
        print("ENERGISED", flush=True)
        time.sleep(60)
    """
)


def test_sigint_during_energised_step_leaves_every_source_off(served: dict[str, Any], tmp_path: Path) -> None:
    suite = tmp_path / "test_energised.py"
    suite.write_text(SIGINT_SUITE)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", str(suite), "--rig", str(served["rig_out"]), "-s", "-q",
         "-p", "no:cacheprovider", "-p", "no:xdist", f"--rootdir={tmp_path}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    output = []
    try:
        deadline = time.monotonic() + 30
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            output.append(line)
            if "ENERGISED" in line or not line:
                break
        assert any("ENERGISED" in line for line in output), "".join(output)
        sources = [i for i in served["instruments"] if i["role"] == "power_source"]
        assert all(_scpi(s["resource"], "OUTP?")[0] in ("1", "ON") for s in sources), "not energised"
        proc.send_signal(signal.SIGINT)
        try:
            rest, _ = proc.communicate(timeout=90)  # a bound on a loaded machine, not a timing judgement
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)  # pytest's faulthandler prints where every thread is
            dump, _ = proc.communicate(timeout=15)
            raise AssertionError(f"the suite did not end within 90 s of SIGINT; where it was:\n{dump[-6000:]}") from None
    finally:
        if proc.poll() is None:
            proc.kill()
    for s in sources:
        state, volts = _scpi(s["resource"], "OUTP?", "MEAS:VOLT?")
        assert state in ("0", "OFF"), f"{s['name']} left on after SIGINT: {''.join(output)}{rest}"
        assert float(volts.rstrip("V")) < 60.0
