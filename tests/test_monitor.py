"""The load-limit monitor: it samples a real meter (the SunSpec emulator over Modbus TCP) at its rate of
the clock, records the limit in force at every sample, writes samples and events to its trace as they come,
and judges what it saw."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from hil.clock import ScaledClock
from hil.emulators.loop import EmulatorLoop
from hil.emulators.modbus_meter import ModbusMeterEmulator
from hil.instruments.energy_meter import EnergyMeter
from hil.compliance.monitor import Monitor
from hil.plant import Plant, Port, Site

SCALE = 10.0
V = 230.0


@pytest.fixture
def site_meter(emulator_loop: EmulatorLoop) -> Iterator[tuple[Plant, ModbusMeterEmulator, EnergyMeter]]:
    plant = Plant([Port("p1", ev=None)], Site(phase_voltage=V, limit_a=50.0, unmanaged_w=(40 * V, 40 * V, 40 * V)))
    emulator = ModbusMeterEmulator(plant, {7: ("sunspec", "site")}, latency=0.0, update_period=0.0)
    emulator_loop.run(emulator.start())
    meter = EnergyMeter("sunspec", host=emulator.host, port=emulator.port, unit=7, name="ref", timeout_s=0.2).open()
    try:
        yield plant, emulator, meter
    finally:
        meter.close()
        emulator_loop.run(emulator.stop())


def test_samples_at_its_rate_and_traces_as_it_goes(site_meter: tuple[Plant, ModbusMeterEmulator, EnergyMeter],
                                                   tmp_path: Path) -> None:
    plant, _, meter = site_meter
    clock = ScaledClock(SCALE)
    trace = tmp_path / "monitor.csv"
    with Monitor(meter, clock, 50.0, rate_hz=10.0, trace=trace) as monitor:
        clock.sleep(10.0)
        monitor.set_limit(30.0)  # 40 A now sits above the new limit's band
        clock.sleep(20.0)
        written = trace.read_text().splitlines()  # before the monitor stops: nothing waits for the end
    t, current, limit = monitor.series()
    assert 240 <= len(t) <= 305  # 10 Hz of a 30 s run, give or take the meter's reply time
    assert len(written) - 1 >= len(t) - 5
    assert np.allclose(current[:, 0], 40.0, atol=0.5)
    assert limit[0, 0] == 50.0 and limit[-1, 0] == 30.0
    events = [json.loads(line) for line in trace.with_suffix(".events.jsonl").read_text().splitlines()]
    assert [(e["kind"], e["headroom"]) for e in events] == [("limit_step", True)]
    late = monitor.judge(10.0)  # 40 A against 30 A x 1.02 + 1 A in the 10 s after the 10 s settling window
    assert not late.steady_pass and 8.0 <= late.steady_violation_s <= 11.0
    changed = float(t[np.argmax(limit[:, 0] < 50.0)])  # the first sample under the new limit
    assert events[0]["time"] <= changed
    assert late.first_failure_s == pytest.approx(events[0]["time"] + 10.0, abs=1.5)
    assert monitor.judge(30.0, since=0.0).steady_pass  # all of it inside a 30 s settling window


def test_counts_the_samples_a_silent_meter_loses(site_meter: tuple[Plant, ModbusMeterEmulator, EnergyMeter]) -> None:
    plant, emulator, meter = site_meter
    clock = ScaledClock(SCALE)
    with Monitor(meter, clock, 50.0, rate_hz=10.0) as monitor:
        clock.sleep(3.0)
        emulator.faults(7).no_reply = True
        clock.sleep(6.0)
        emulator.faults(7).clear()
        clock.sleep(4.0)
    t, _, _ = monitor.series()
    assert monitor.read_errors >= 2 and "ref" in (monitor.last_error or "")
    gaps = np.diff(t)
    assert gaps.max() >= 1.5  # the silence shows as a hole in the series, not as made-up samples
    assert t[-1] >= 11.0  # and sampling resumed
