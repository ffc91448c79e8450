"""evhil's charge point emulator out of process, the way a real charger is: ``hil charge-point --control-port
--json --rig-out`` and the recipe ``rigs/charger-under-test.yaml`` (every action a ``hil do`` on the charger's
test-mode service port) give the OCPP 1.6 suite the same verdict, case for case, as the emulator in process;
the charger is put back to its factory state, switched off, before each case; the suite reads the connector
meters the charger's process serves. Times: seconds."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from hil.cli import app
from hil.control import ACTIONS
from hil.ocpp import catalogue
from hil.ocpp.bench_charger import BenchCharger, ChargerProcess, control_commands
from hil.ocpp.charge_point import ChargePoint
from hil.ocpp.compare_runs import Comparison
from hil.ocpp.csms import CSMS
from hil.ocpp.outlet import Outlet
from hil.ocpp.precheck import automated, outcomes_from_junit
from hil.plant import Plant
from hil.rig.model import RigSpec
from hil.rig.rig import Rig
from hil.service_port import ServicePort, ServicePortError, call

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "rigs" / "charger-under-test.yaml"
RECIPE_CSMS_PORT, RECIPE_CONTROL = 9000, "http://127.0.0.1:9402"
PROFILES = ("Smart Charging", "Local Auth List Management", "Remote Trigger")
"""Whole 1.6 profiles the CI run compares (19 cases; ``python -m hil.ocpp.compare_runs`` does both suites)."""
SUITE_TIMEOUT = 150.0


def profile_cases() -> list[str]:
    """The automated 1.6 charge point cases of ``PROFILES``."""
    return sorted(c for c in automated(ROOT / "suites" / "ocpp16") if catalogue.case(c).profile in PROFILES)


def recipe_rig(generated: Path, control: str, path: Path) -> Path:
    """``rigs/charger-under-test.yaml`` with its fixed ports replaced by those of a running charger (its service
    port ``control``), and the charger's port meters from the rig file it wrote (``--rig-out``)."""
    spec = yaml.safe_load(RECIPE.read_text())
    served = yaml.safe_load(generated.read_text())
    dut, commands = spec["dut"], spec["dut"]["control"]["commands"]
    assert dut["csms_port"] == RECIPE_CSMS_PORT, f"{RECIPE}: dut.csms_port {dut['csms_port']}, expected {RECIPE_CSMS_PORT}"
    assert commands == control_commands(RECIPE_CONTROL), f"{RECIPE}: commands differ from bench_charger.control_commands"
    dut.update(csms_port=served["dut"]["csms_port"], ocpp_version="1.6")
    assert dut.pop("launch", "").startswith("hil charge-point "), f"{RECIPE}: dut.launch"
    dut.pop("launch_ready")  # this test starts the charger itself, to read the meters its --rig-out serves
    dut["control"]["commands"] = {a: line.replace(RECIPE_CONTROL, control) for a, line in commands.items()}
    spec.update(ports=served["ports"], meters=served["meters"])
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def suite(rig: Path, junit: Path, log: Path, cases: list[str]) -> subprocess.Popen[bytes]:
    """The 1.6 suite's ``cases`` in a child pytest (``hil`` on its PATH for the rig's commands)."""
    plugins = ["-p", "no:cacheprovider"] + (["-p", "no:randomly"] if importlib.util.find_spec("pytest_randomly") else [])
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "pytest", *plugins, "-q", "suites/ocpp16", "--rig", str(rig),
                                 "-k", " or ".join(catalogue.pytest_name(c) for c in cases), f"--junitxml={junit}",
                                 "-o", "junit_family=xunit2"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def verdicts(process: subprocess.Popen[bytes], junit: Path, log: Path, deadline: float) -> dict[str, str]:
    try:
        process.wait(max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{junit.stem}: not done within {SUITE_TIMEOUT:g} s: {log.read_text()[-2000:]}") from None
    assert junit.exists(), f"{junit.stem} wrote no report: {log.read_text()[-3000:]}"
    return {case: o.outcome for case, o in outcomes_from_junit(junit).items()}


def test_16_profiles_give_the_same_verdicts_out_of_process(tmp_path: Path) -> None:
    cases = profile_cases()
    assert len(cases) == 19, f"cases of {PROFILES}: {cases}"
    in_process: subprocess.Popen[bytes] | None = None
    out_of_process: subprocess.Popen[bytes] | None = None
    charger = ChargerProcess(tmp_path, ocpp="1.6", rig=ROOT / "rigs" / "emulated.yaml", connectors=2)
    try:
        in_process = suite(ROOT / "rigs" / "emulated.yaml", tmp_path / "in.xml", tmp_path / "in.log", cases)
        charger.start()
        lines = charger.log_path.read_text().splitlines()
        assert charger.info["charge_point"] == "EVHIL-CP1" and charger.info["control"].startswith("http://127.0.0.1:")
        assert sum(line.startswith("{") for line in lines) == 1, f"more than one JSON line: {lines[:5]}"
        rig = recipe_rig(charger.rig_path, charger.info["control"], tmp_path / "charger-under-test.yaml")
        with Rig(RigSpec.model_validate(yaml.safe_load(rig.read_text())), rig) as bench:
            assert len(bench.meter("m2").read().current) == 3  # the charger's process serves its port meters
        out_of_process = suite(rig, tmp_path / "out.xml", tmp_path / "out.log", cases)
        deadline = time.monotonic() + SUITE_TIMEOUT
        inside = verdicts(in_process, tmp_path / "in.xml", tmp_path / "in.log", deadline)
        outside = verdicts(out_of_process, tmp_path / "out.xml", tmp_path / "out.log", deadline)
        status = charger.status()
        assert charger.process is not None and charger.process.poll() is None, "hil charge-point stopped during the suite"
    finally:
        for process in (in_process, out_of_process):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(10)
        charger.stop()
    assert sorted(inside) == cases and set(inside.values()) == {"passed"}, f"in process: {inside}"
    differ = {c: (inside.get(c), outside.get(c)) for c in cases if inside.get(c) != outside.get(c)}
    assert not differ, f"case: (in process, out of process) verdicts differ: {differ}; see {tmp_path / 'out.log'}"
    assert status["resets"] == len(cases), f"one factory reset per case through the command adapter: {status}"
    log = charger.log_path.read_text()
    assert "EVHIL-CP1 <- CALL SetChargingProfile" in log, "the suite's CSMS never reached the charger's process"


# -- the test mode in process ---------------------------------------------------------------------------------
async def test_factory_reset_forgets_the_last_test_and_leaves_the_charger_off(small_plant: Plant) -> None:
    csms = await CSMS().start()
    outlets = [Outlet(small_plant, "p1"), Outlet(small_plant, "p2")]
    charger = BenchCharger(lambda: ChargePoint("BENCH-1", csms.url, outlets), outlets)
    port = await ServicePort(charger.actions()).start()
    session = csms.session("BENCH-1")

    async def do(action: str, **values: object) -> object:
        return await asyncio.to_thread(call, f"{port.url}/{action}", 10.0, **values)

    try:
        assert set(ACTIONS) <= set(charger.actions()), "every control-seam action is a test-mode action"
        await charger.start()
        await session.expect("BootNotification", timeout=10)
        await session.call_expect("ChangeConfiguration", {"key": "HeartbeatInterval", "value": "7"}, "Accepted")
        await do("plug_in", connector=2)
        assert outlets[1].plugged_in
        await do("power_on")  # a PDU switched on again: no reboot
        await session.expect_none("BootNotification", within=0.5)
        await do("factory_reset")
        assert await do("status") == {"id": "BENCH-1", "on": False, "resets": 1, "boot_status": None}
        assert not outlets[1].plugged_in and not session.connected
        assert charger.emulator.config["HeartbeatInterval"].value == "300"
        await do("power_off")  # already off: nothing happens
        session.consume_all()
        await do("power_on")
        await session.expect("BootNotification", timeout=10)
        with pytest.raises(ServicePortError, match="has connectors \\[1, 2\\], not 3"):
            await do("plug_in", connector=3)
        with pytest.raises(ServicePortError, match="unexpected keyword argument 'volts'"):
            await do("raise_fault", connector=1, volts=3)
    finally:
        await port.stop()
        await charger.stop()
        await csms.stop()


def test_charge_point_refuses_options_that_do_not_fit() -> None:
    runner = CliRunner()
    done = runner.invoke(app, ["charge-point", "--csms", "ws://127.0.0.1:9/", "--rig-out", "x.yaml"])
    assert done.exit_code == 2 and "add --control-port 0" in done.output
    done = runner.invoke(app, ["charge-point", "--csms", "ws://127.0.0.1:9/", "--set", "HeartbeatInterval"])
    assert done.exit_code == 2 and "--set HeartbeatInterval: expected KEY=VALUE" in done.output


def test_a_comparison_names_every_case_whose_verdict_differs() -> None:
    result = Comparison("1.6", {"TC_001_CS": ("passed", ""), "TC_002_CS": ("passed", ""), "TC_003_CS": ("skipped", "x")},
                        {"TC_001_CS": ("passed", ""), "TC_002_CS": ("failed", "step 3: no Heartbeat")})
    assert result.differing() == ["TC_002_CS", "TC_003_CS"]
    assert "1 of 3 cases with the same verdict, 2 different" in result.report()
    assert "TC_002_CS out of process: failed step 3: no Heartbeat" in result.report()
