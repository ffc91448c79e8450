"""A site's load manager in its own process as the device under test: the example product
(``examples/site_load_manager.py``, which imports nothing from evhil) run through the load-limit and
fault-recovery suites exactly as a lab runs its own, from the shipped recipe ``rigs/site-under-test.yaml``.

The good product passes a limit step and a phase misdeclaration; with its defect flag on (a lower limit
applied 30 s late) the limit step fails and names the criterion it broke. The two runs go one after the
other on ports of their own, in real time (the product lives on the wall clock): about three minutes.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import yaml

from hil.site.conditions import Condition, ev, site
from hil.site.scenarios import GridEvent
from hil.site.under_test import limit_notices

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "rigs" / "site-under-test.yaml"
PRODUCT = ROOT / "examples" / "site_load_manager.py"
RUN_TIMEOUT_S = 420.0


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _rig(tmp_path: Path, name: str, defect: str | None = None) -> Path:
    """The recipe with ports of its own, the product started with this interpreter (and its defect)."""
    ocpp, api, meter = _free_ports(3)
    data = yaml.safe_load(RECIPE.read_text())
    dut = data["dut"]
    dut["csms_url"] = f"ws://127.0.0.1:{ocpp}/"
    dut["site_meter"]["tcp_port"] = meter
    dut["launch"] = (f"{sys.executable} {PRODUCT} --ocpp-port {ocpp} --api-port {api} --meter 127.0.0.1:{meter} "
                     f"--unit {dut['site_meter']['unit']}" + (f" --defect {defect}" if defect else ""))
    dut["control"]["commands"]["set_site_limit"] = (
        f"{sys.executable} -m hil.cli do http://127.0.0.1:{api}/set_site_limit limit_a:={{limit}} delay_s:={{delay}}")
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _suite(rig: Path, junit: Path, *selection: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-p", "no:xdist", f"--rootdir={ROOT}",
         "--rig", str(rig), f"--junitxml={junit}", *selection],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _outcomes(junit: Path) -> dict[str, str]:
    """Per test case name: 'passed', 'failed', 'error' or 'skipped', with the failure message after a colon."""
    out = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        verdict = "passed"
        for kind in ("failure", "error", "skipped"):
            found = case.find(kind)
            if found is not None:
                verdict = f"{'failed' if kind == 'failure' else kind}: {found.get('message', '')}"
        out[case.get("name", "")] = verdict
    return out


def test_the_example_product_passes_and_its_defect_is_caught(tmp_path: Path) -> None:
    limit_step = "suites/load_limit/test_load_limit.py::test_site_stays_inside_the_limit"
    good_rig, bad_rig = _rig(tmp_path, "good"), _rig(tmp_path, "defect", "late-decrease")
    runs = {  # one after the other: side by side they would crowd a 2-core machine's other tests
        "good": (good_rig, (limit_step, "suites/fault_recovery/test_faults.py::test_f6_phase_misdeclaration",
                            "-k", "limit_step_down or 1ph-declared-3ph")),
        "defect": (bad_rig, (limit_step, "-k", "limit_step_down")),
    }
    logs = {}
    for name, (rig, selection) in runs.items():
        proc = _suite(rig, tmp_path / f"{name}.xml", *selection)
        try:
            logs[name] = proc.communicate(timeout=RUN_TIMEOUT_S)[0].decode(errors="replace")
        finally:
            proc.kill()
    good = _outcomes(tmp_path / "good.xml")
    assert sorted(good) == ["test_f6_phase_misdeclaration[dut-1ph-declared-3ph]",
                            "test_site_stays_inside_the_limit[dut-limit_step_down]"], logs["good"][-3000:]
    assert all(v == "passed" for v in good.values()), f"{good}\n{logs['good'][-3000:]}"
    bad = _outcomes(tmp_path / "defect.xml")
    verdict = bad["test_site_stays_inside_the_limit[dut-limit_step_down]"]
    assert verdict.startswith("failed"), f"{bad}\n{logs['defect'][-3000:]}"
    assert "FAIL (steady" in verdict and "above the band outside the settling windows" in verdict, verdict


def test_the_product_is_told_each_limit_when_it_changes_and_demand_response_as_early_as_announced() -> None:
    """What ``set_site_limit`` carries: the first limit at 0, a limit step when it happens, a demand-response
    event ``notice`` seconds ahead (in force at its start), its end when it ends."""
    scenario = site("dr", [ev(0)], limit_a=80.0, duration_s=90.0,
                    events=(GridEvent("limit_step", 10.0, fraction=0.5),
                            GridEvent("demand_response", 50.0, duration=20.0, fraction=0.25, notice=15.0)))
    notices = [(n.tell_s, n.start_s, n.limit_a) for n in limit_notices(scenario)]
    assert np.allclose(notices, [(0.0, 0.0, 80.0), (10.0, 10.0, 40.0), (35.0, 50.0, 30.0), (70.0, 70.0, 40.0)])


@pytest.mark.parametrize("missing", ["csms_url", "ocpp_version"])
def test_a_site_controller_without_an_address_is_a_clear_error(missing: str) -> None:
    from hil.rig.model import RigSpec
    from hil.rig.rig import Rig
    from hil.site.rig_run import rig_for
    from hil.site.under_test import SiteUnderTest, SiteUnderTestError
    from hil.control import CommandControl

    data = yaml.safe_load(RECIPE.read_text())
    data["dut"].pop(missing)
    dut = RigSpec.model_validate(data).dut
    condition = Condition("one EV", "", site("one", [ev(0)], limit_a=32.0, duration_s=5.0))
    with Rig(rig_for(condition.scenario, 1.0)) as rig:
        with pytest.raises(SiteUnderTestError, match="dut.csms_url and dut.ocpp_version"):
            SiteUnderTest(condition.scenario, rig, dut, CommandControl({}))
