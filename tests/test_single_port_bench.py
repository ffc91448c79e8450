"""A bench of one port whose instruments have names of their own runs the load-limit suite: the shipped
``rigs/single-port.yaml`` served by ``hil emulate --rig-out`` in another process, and the suite run on the
served rig as on a real bench (its instruments reached over their sockets, no plant in the test process).

The conditions written for four ports run on the one port with the site scaled to it; those that need
more ports, a wiring or a controllable building load skip and say why. The negative control still fails.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

from suite_runner import junit_outcomes

ROOT = Path(__file__).resolve().parents[1]
RIG = ROOT / "rigs" / "single-port.yaml"
START_TIMEOUT_S = 30.0
SUITE_TIMEOUT_S = 300.0




def test_a_one_port_bench_of_its_own_names_runs_the_load_limit_suite(tmp_path: Path) -> None:
    served = tmp_path / "served.yaml"
    log = tmp_path / "emulate.log"
    with log.open("wb") as out:
        emulator = subprocess.Popen([sys.executable, "-m", "hil.cli", "emulate", str(RIG), "--json", "--rig-out",
                                     str(served)], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not log.read_bytes().strip().endswith(b"}"):
            assert emulator.poll() is None, f"hil emulate exited: {log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"hil emulate printed no addresses within {START_TIMEOUT_S:g} s"
            time.sleep(0.05)
        names = {i["name"] for i in json.loads(log.read_text().splitlines()[0])["instruments"]}
        assert names == {"dc-stage", "bay-a-meter", "grid", "lab-reference", "test-car"}
        spec = yaml.safe_load(served.read_text())
        assert not any(i.get("emulated") for role in ("power_sources", "meters", "ev_simulators") for i in spec[role])
        junit = tmp_path / "suite.xml"
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", "-q", f"--rootdir={ROOT}",
             "suites/load_limit/test_load_limit.py", "--rig", str(served), "--controller", "parallel,plain",
             f"--junitxml={junit}"], cwd=ROOT, capture_output=True, text=True, timeout=SUITE_TIMEOUT_S)
        assert emulator.poll() is None, f"hil emulate stopped during the suite: {log.read_text()[-2000:]}"
    finally:
        emulator.terminate()
        emulator.wait(10)
    outcomes = junit_outcomes(junit)
    report = f"{outcomes}\n{done.stdout[-3000:]}"
    ran = {"limit_step_down", "limit_step_up", "demand_response_with_notice", "demand_response_without_notice"}
    for condition in ran:
        assert outcomes[f"test_site_stays_inside_the_limit[parallel-{condition}]"][0] == "passed", report
        # the negative control runs too, and fails as it must (xfail strict)
        assert outcomes[f"test_site_stays_inside_the_limit[plain-{condition}]"][0] == "skipped", report
        assert "negative control" in outcomes[f"test_site_stays_inside_the_limit[plain-{condition}]"][1], report
    skipped = {
        "test_site_stays_inside_the_limit[parallel-single_phase_imbalance]": "needs at least 2 ports",
        "test_site_stays_inside_the_limit[parallel-arrivals]": "needs at least 3 ports",
        "test_site_stays_inside_the_limit[parallel-scarcity]": "needs at least 2 ports",
        "test_site_stays_inside_the_limit[parallel-short_sessions]": "needs at least 2 ports",
        "test_site_stays_inside_the_limit[parallel-unmanaged_load_step]": "no controllable load",
    }
    for case, reason in skipped.items():
        assert outcomes[case][0] == "skipped" and reason in outcomes[case][1], report
