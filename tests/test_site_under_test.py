"""A site's load manager in its own process as the device under test: the example product
(``examples/site_load_manager.py``, which imports nothing from evhil) run through the whole load-limit and
fault-recovery suites, as a lab runs its own, from the shipped recipe ``rigs/site-under-test.yaml``.

The recipe runs in real time, which would take the suites over 20 minutes. The example also comes as a
simulation build (``--time-scale``: its own time runs faster than the wall clock), so here the rig's clock
and the product's run ten times faster, and the limit goes to its API in process (the ``service`` adapter)
instead of through a ``hil do`` process per change, which would cost seconds of the scaled clock. The good
product passes every condition that can be injected into a product (the others skip saying why); with its
defect flag on (a lower limit applied 30 s late) the limit step, run in real time, fails and names the
criterion it broke.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from hil.site.conditions import Condition, ev, site
from hil.site.scenarios import GridEvent
from hil.site.under_test import limit_notices
from suite_runner import free_ports, junit_outcomes

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "rigs" / "site-under-test.yaml"
PRODUCT = ROOT / "examples" / "site_load_manager.py"
SCALE = 10.0
RUN_TIMEOUT_S = 900.0
CANNOT_INJECT = {  # the tests that skip for a product, and a word of their reason
    "test_cloud_limit_step_delivered_as_charging_profiles[dut]": "cloud-managed architecture",
    "test_f3_csms_unreachable_30_min_during_a_limit_reduction[dut]": "network seam",
    "test_controller_restart_mid_session[dut]": "restart seam",
}


def _rig(tmp_path: Path, name: str, defect: str | None = None, scale: float = SCALE) -> Path:
    """The recipe with ports of its own, its product started with this interpreter on the rig's time
    ``scale`` (and with its defect), told the limit through its service port."""
    ocpp, api, meter = free_ports(3)
    data = yaml.safe_load(RECIPE.read_text())
    data["clock"] = {"scale": scale}
    dut = data["dut"]
    assert dut["launch"].startswith("python3 examples/site_load_manager.py "), f"{RECIPE}: dut.launch"
    dut["csms_url"] = f"ws://127.0.0.1:{ocpp}/"
    dut["site_meter"]["tcp_port"] = meter
    dut["launch"] = (f"{sys.executable} {PRODUCT} --ocpp-port {ocpp} --api-port {api} --meter 127.0.0.1:{meter} "
                     f"--unit {dut['site_meter']['unit']} --time-scale {scale:g}" + (f" --defect {defect}" if defect else ""))
    assert "set_site_limit" in dut["control"]["commands"], f"{RECIPE}: no set_site_limit command"
    dut["control"] = {"adapter": "service", "service_url": f"http://127.0.0.1:{api}", "timeout_s": 10}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _suite(rig: Path, junit: Path, *selection: str) -> str:
    """The selected suites in a child pytest on ``rig``; its output."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-p", "no:xdist", f"--rootdir={ROOT}",
         "--rig", str(rig), f"--junitxml={junit}", *selection], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        return proc.communicate(timeout=RUN_TIMEOUT_S)[0].decode(errors="replace")
    finally:
        proc.kill()


def test_the_example_product_passes_the_suites_and_its_defect_is_caught(tmp_path: Path) -> None:
    log = _suite(_rig(tmp_path, "good"), tmp_path / "good.xml", "suites/load_limit", "suites/fault_recovery",
                 "--reference", "none")
    good = junit_outcomes(tmp_path / "good.xml")
    assert len(good) >= 20, f"{sorted(good)}\n{log[-3000:]}"
    assert all(case.endswith("[dut]") or "[dut-" in case for case in good), sorted(good)
    for case, (outcome, message) in good.items():
        if case in CANNOT_INJECT:
            assert outcome == "skipped" and CANNOT_INJECT[case] in message, (case, outcome, message)
        else:
            assert outcome == "passed", f"{case}: {outcome}: {message}\n{log[-3000:]}"
    # the defect in real time: on a loaded machine a fast product may fall back on a late meter reading and
    # keep far below the limit, which would hide the defect rather than show it
    log = _suite(_rig(tmp_path, "defect", "late-decrease", scale=1.0), tmp_path / "defect.xml",
                 "suites/load_limit/test_load_limit.py::test_site_stays_inside_the_limit", "-k", "limit_step_down",
                 f"--run-dir={tmp_path / 'run'}")
    outcome, message = junit_outcomes(tmp_path / "defect.xml")["test_site_stays_inside_the_limit[dut-limit_step_down]"]
    assert outcome == "failed", f"{outcome}: {message}\n{log[-3000:]}"
    assert "FAIL" in message and "steady state (compliance definition, criterion 1)" in message, message
    assert "above the band L x 1.02 + 1 A outside the settling windows" in message, message
    # the report shows the reference controller on the same condition; the product's log is kept with the traces
    record = json.loads((tmp_path / "run" / "run-record.json").read_text())
    test = next(t for t in record["tests"] if t["nodeid"].endswith("[dut-limit_step_down]"))
    measured = {m["name"]: m["value"] for m in test["measurements"]}
    assert measured["adaptive on the same condition: time above the band outside the settling windows"] == 0.0
    logs = list((tmp_path / "run").rglob("*limit_step_down.dut.log"))
    assert len(logs) == 1 and "DEFECT late-decrease" in logs[0].read_text(), logs


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
