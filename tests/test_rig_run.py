"""A scenario through the emulated rig (SCPI power sources, Modbus meters, CAN EVs, scaled clock) gives the
same compliance verdict and, once the in-memory plant has the EV start-up the rig measured, the same
energy within 1 % as the in-memory loop."""

from __future__ import annotations

import numpy as np
import pytest

from hil.controllers.reference import Parallel
from hil.site.rig_run import RigRunResult, rig_for, run_on_rig
from hil.site.metrics import measure
from hil.site.scenarios import GridEvent, Scenario, Session, load_tariff
from hil.site.simulation import SimulationConfig, simulate

THREE = (0, 1, 2)
SCALE = 10.0  # 400 simulated seconds in 40 s: room for the loop on a loaded 2-core machine


def four_ports() -> Scenario:
    """Four DC ports behind a 50 A feeder: staggered arrivals, one EV that finishes, a limit step down, an
    unmanaged-load step, a departure and a late arrival on the freed port."""
    sessions = (Session("s1", 0, 10.0, 280.0, 1.0, 32.0, THREE), Session("s2", 1, 30.0, 400.0, 1.2, 32.0, THREE),
                Session("s3", 2, 60.0, 400.0, 0.3, 16.0, THREE), Session("s4", 3, 90.0, 400.0, 1.5, 32.0, THREE),
                Session("s5", 0, 300.0, 400.0, 0.6, 32.0, THREE))
    return Scenario(name="four-ports", seed=0, ports=4, phase_voltage=230.0, evse_max_a=32.0, limit_a=50.0, breaker_a=50.0,
                    unmanaged_a=2.0, tariff=load_tariff("flat"), start_h=0.0, duration=400.0, sessions=sessions,
                    events=(GridEvent("limit_step", 150.0, fraction=0.7), GridEvent("unmanaged_step", 220.0, fraction=0.2)),
                    port_phase=(0, 1, 2, 0))


@pytest.fixture(scope="module")
def on_rig() -> RigRunResult:
    return run_on_rig(four_ports(), Parallel(), scale=SCALE)


def test_rig_for_alternates_vendor_dialects() -> None:
    spec = rig_for(four_ports(), SCALE)
    assert [s.profile for s in spec.power_sources] == ["keysight_rp7900", "ea_psb10000"] * 2
    assert spec.clock.scale == SCALE and [m.point for m in spec.meters][-1] == "site"


def test_rig_for_wires_each_port_like_its_sessions() -> None:
    scenario = four_ports()
    one_phase = Scenario(**{**scenario.__dict__, "sessions": (Session("x", 1, 1.0, 10.0, 1.0, 16.0, (2,)),)})
    assert [p.phases for p in rig_for(one_phase, SCALE).ports] == [[1, 2, 3], [3], [1, 2, 3], [1, 2, 3]]
    mixed = Scenario(**{**scenario.__dict__, "sessions": (Session("x", 1, 1.0, 10.0, 1.0, 16.0, (2,)),
                                                          Session("y", 1, 20.0, 30.0, 1.0, 16.0, THREE))})
    with pytest.raises(ValueError, match="one wiring"):
        rig_for(mixed, SCALE)


def test_same_verdict_and_energy_within_one_percent(on_rig: RigRunResult) -> None:
    scenario = four_ports()
    rig = measure(on_rig.run)
    assert len(on_rig.start_delay_s) == 5 and 0.0 <= float(np.median(on_rig.start_delay_s)) <= 15.0
    # The in-memory plant with the rig's dynamics: a change is seen one control period later, and the EV
    # start-up (CAN handshake, contactor) the rig measured. The energy a start-up costs grows with its length,
    # so the plant gets the mean: on a loaded machine one late start is not hidden by a median.
    config = SimulationConfig(ev_delay=1.0, ev_lag=0.0, ev_start_delay=float(np.mean(on_rig.start_delay_s)))
    memory = simulate(scenario, Parallel(), config)
    mem = measure(memory)
    assert rig.compliance.verdict == mem.compliance.verdict == "PASS", rig.compliance.to_dict()
    assert on_rig.run.delivered_kwh.sum() == pytest.approx(memory.delivered_kwh.sum(), rel=0.01)
    # s3 asked for little: both runs deliver all of it (the rig's EV stops itself when it has it).
    assert on_rig.run.delivered_kwh[2] == pytest.approx(0.3, abs=0.005) and memory.delivered_kwh[2] == pytest.approx(0.3)


def test_a_running_rig_reports_its_clock_and_injected_faults() -> None:
    from hil.rig.rig import Rig

    with Rig(rig_for(four_ports(), SCALE)) as rig:
        assert rig in Rig.running()
        rig.meter("site").read()
        rig.faults("site").no_reply = True
        rig.faults("ps2").latency = 0.1
        status = rig.status()
        assert status["faults"] == {"ps2": ["latency"], "site": ["no_reply"]}
        assert (status["rig"], status["scale"], status["instruments"], status["in_use"]) == ("four-ports-rig", SCALE, 14, 1)
        assert status["sim_s"] >= 0.0
    assert rig not in Rig.running()
