"""The load-limit monitor on the rig: one port charging at a known power, the reference meter sampled at the
monitor's rate, and the site current it sees against the power the source delivers. Runs unchanged against
emulated and real rigs (the monitor reads the meter named ``ref``, else ``site``)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from hil.instruments.ev_simulator import EVSimulator
from hil.instruments.power_source import PowerSource
from hil.compliance.monitor import Monitor
from hil.report.measurement import Measurements
from hil.rig.rig import Rig

POWER_W = 20_000.0
VOLTAGE_V = 400.0
SETTLE_S = 1.5
SAMPLE_S = 3.0


def test_monitor_sees_one_port_charging(rig: Rig, power_source: PowerSource, ev: EVSimulator, monitor: Monitor,
                                        measurements: Measurements) -> None:
    spec = rig.spec
    port = next(s.port for s in spec.power_sources if s.name == power_source.name)
    if next(e.port for e in spec.ev_simulators if e.name == ev.name) != port:
        pytest.skip(f"rig {spec.name!r}: the first power source and EV simulator are not on one port")
    ev.plug_in()
    ev.start()
    power_source.set_voltage(VOLTAGE_V)
    power_source.set_current(POWER_W / VOLTAGE_V * 1.2)
    power_source.set_power(POWER_W)
    power_source.output(True)
    try:
        time.sleep(SETTLE_S)
        monitor.log("charging", f"{power_source.name} at {POWER_W:g} W")
        start = monitor.now()
        time.sleep(SAMPLE_S)
        delivered = power_source.measure()
    finally:
        power_source.safe_state()
        ev.stop()
    t, current, _ = monitor.series()
    window = t >= start
    rate = window.sum() / SAMPLE_S / rig.clock.scale
    expected = delivered.voltage * delivered.current / spec.site.phase_voltage / 3  # per phase, on a DC stage
    measurements.record("monitor samples per second of the rig's clock", rate, "1/s",
                        low=0.6 * monitor.period ** -1)
    measurements.record("site current the monitor saw, per phase", float(np.mean(current[window])), "A",
                        low=0.95 * expected, high=1.05 * expected + 1.0)
    verdict = monitor.judge(10.0, since=start)
    measurements.record("inside the site limit's band (1 = yes)", float(verdict.passed), "", low=1.0)
