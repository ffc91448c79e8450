"""Reports: failure origins, measurements, the run record and its journal, categories, live progress, and
a small suite run through the plugin with Allure results and a run record."""

from __future__ import annotations

import fcntl
import io
import json
import math
import os
import re
import select
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

import fastjsonschema
import pytest

from hil.control import ControlError
from hil.instruments.errors import InstrumentUnreachable, SoftLimitError
from hil.ocpp.conformance import ConformanceFailure
from hil.report.categories import CATEGORIES, allure2_categories, allure3_categories, rig_trace_note
from hil.report.failure_origin import DUT, RIG, TEST, failure_origin
from hil.report.measurement import Measurement, MeasurementOutOfLimits, Measurements
from hil.report.progress import JournalFollower, ProgressState, wanted
from hil.report.run_record import JOURNAL, RECORD, Journal, fold, load_schema, read_journal, write_record

ROOT = Path(__file__).resolve().parents[1]
validate = fastjsonschema.compile(load_schema())


# -- who a failure is about -----------------------------------------------------------------------------
def _raised(make: type[BaseException] | None = None) -> BaseException:
    """An InstrumentUnreachable turned into pytest.fail, the way the plugin's fixtures report it."""
    try:
        try:
            raise InstrumentUnreachable("m1", "127.0.0.1:502", "no answer within 1 s")
        except InstrumentUnreachable as exc:
            pytest.fail(str(exc), pytrace=False)
    except BaseException as exc:  # noqa: BLE001 - the Failed outcome is what we want
        return exc
    raise AssertionError("unreachable")


def test_failure_origin_keeps_rig_errors_apart_from_product_defects() -> None:
    assert failure_origin(InstrumentUnreachable("m1", "a", "timeout"), "call") == RIG
    assert failure_origin(SoftLimitError("ps1", "a", "over"), "setup") == RIG
    assert failure_origin(ControlError("plug_in: ./ev.sh exited 1"), "call") == RIG
    assert failure_origin(_raised(), "setup") == RIG  # pytest.fail hiding an instrument error
    assert failure_origin(ConformanceFailure("StatusNotification missing", step="step 2 (x)"), "call") == DUT
    assert failure_origin(MeasurementOutOfLimits("site current = 36 A"), "call") == DUT
    assert failure_origin(AssertionError("x"), "call") == DUT
    assert failure_origin(KeyError("missing"), "call") == TEST
    with pytest.raises(pytest.fail.Exception) as failed:
        pytest.fail("safe state not verified")
    assert failure_origin(failed.value, "teardown") == TEST
    assert failure_origin(failed.value, "call") == DUT


def test_categories_match_each_origin_once_and_in_both_formats() -> None:
    rig_trace = "Traceback...\n\n" + rig_trace_note(InstrumentUnreachable("m1", "a", "timeout"))
    allure2 = allure2_categories()
    assert [c["name"] for c in allure2] == [c.name for c in CATEGORIES]

    def matching(status: str, trace: str) -> list[str]:  # Python's re stands in for Java's here
        return [c["name"] for c in allure2 if status in c["matchedStatuses"]
                and re.fullmatch(c.get("traceRegex", "(?s).*"), trace)]

    assert matching("failed", "AssertionError") == ["Device-under-test failures"]
    assert matching("broken", rig_trace) == ["Rig errors"]
    assert matching("broken", "KeyError: 'missing'") == ["Test errors"]
    rules = {r["name"]: r["matchers"] for r in allure3_categories()}
    assert rules["Rig errors"] == {"statuses": ["broken"], "labels": {"origin": "^rig$"}}
    assert re.fullmatch(rules["Device-under-test failures"]["labels"]["origin"], DUT)


# -- measurements ---------------------------------------------------------------------------------------
def test_measurement_verdicts_and_text() -> None:
    assert Measurement("v", 400.2, "V", 395, 405).verdict == "pass"
    assert Measurement("v", 405.0, "V", 395, 405).verdict == "pass"  # limits are inclusive
    assert Measurement("i", 36.0, "A", high=32).verdict == "fail"
    assert Measurement("i", math.nan, "A", high=32).verdict == "fail"
    assert Measurement("soc", 80.0, "%").verdict == "info"
    assert Measurement("output voltage", 400.2, "V", 395, 405).text() == "output voltage = 400.2 V (limits 395 to 405 V): pass"
    assert Measurement("i", 36.0, "A", high=32).text() == "i = 36 A (limits at most 32 A): fail"
    assert Measurement("i", math.inf, "A").to_dict()["value"] is None  # JSON has no infinity


def test_measurements_fail_the_test_at_its_end_naming_each(tmp_path: Path) -> None:
    recorder = Measurements("t", tmp_path)
    recorder.record("output voltage", 400.0, "V", low=395, high=405)
    recorder.record("site current", 36.0, "A", high=32.0)
    recorder.record("ramp time", 2.5, "s", high=1.0)
    with pytest.raises(MeasurementOutOfLimits, match=r"site current = 36 A .*; ramp time = 2.5 s"):
        recorder.check()
    assert "output voltage,400,V,395,405,pass" in recorder.table_csv()
    with pytest.raises(TypeError, match="'x' is not a number"):
        recorder.record("bad", "x", "V")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="low limit 5.0 is above high limit 1.0"):
        recorder.record("bad", 1.0, "V", low=5.0, high=1.0)
    with pytest.raises(FileNotFoundError, match="no file"):
        recorder.figure(tmp_path / "missing.png", "plot")


# -- the run record -------------------------------------------------------------------------------------
def _test_entry(nodeid: str, verdict: str) -> dict[str, object]:
    return {"nodeid": nodeid, "name": nodeid, "area": "A", "profile": "P", "case": nodeid, "outcome": "passed",
            "verdict": verdict, "origin": None, "duration_s": 0.1, "phases": {"call": 0.1}, "message": None,
            "measurements": [], "figures": [], "artefacts": [], "parameters": {}}


def test_a_crash_mid_run_keeps_every_finished_test(tmp_path: Path) -> None:
    journal = Journal(tmp_path / JOURNAL)
    journal.write("run_start", run={"id": "r", "rig": {"name": "emulated", "file": "rigs/emulated.yaml", "emulated": True}})
    journal.write("collected", total=3)
    for n, verdict in ((1, "pass"), (2, "fail")):
        journal.write("test_start", nodeid=f"t{n}")
        journal.write("test", test=_test_entry(f"t{n}", verdict))
    journal.write("test_start", nodeid="t3")
    journal.close()
    with (tmp_path / JOURNAL).open("a") as f:
        f.write('{"event": "test", "test": {"nodeid": "t3"')  # the line being written when the run died
    record = json.loads(write_record(tmp_path).read_text())
    validate(record)
    assert record["run"]["complete"] is False and record["run"]["interrupted_in"] == "t3"
    assert record["summary"] == {"total": 2, "pass": 1, "fail": 1, "error": 0, "skip": 0}
    assert [t["nodeid"] for t in record["tests"]] == ["t1", "t2"]
    assert len(read_journal(tmp_path / JOURNAL)) == 7  # the cut line left out


def test_the_schema_rejects_a_record_of_another_version() -> None:
    record = fold([{"event": "run_start", "time": "t", "run": {"id": "r", "rig": {"name": "x", "file": "f", "emulated": True}}},
                   {"event": "run_finish", "time": "t", "exit_status": 0}])
    validate(record)
    with pytest.raises(fastjsonschema.JsonSchemaException):
        validate({**record, "schema_version": 2})


# -- live progress --------------------------------------------------------------------------------------
def test_progress_is_quiet_off_a_terminal_and_follows_the_journal(tmp_path: Path) -> None:
    assert wanted(io.StringIO()) is False
    path = tmp_path / JOURNAL
    follower = JournalFollower(path)
    assert follower.new_events() == []
    path.write_text('{"event": "collected", "total": 2}\n{"event": "test_start", "nodeid": "a"}\n{"event": "te')
    state = ProgressState()
    for event in follower.new_events():
        state.apply(event)
    assert (state.total, state.current, state.done) == (2, "a", 0)
    with path.open("a") as f:
        f.write('st", "test": {"nodeid": "a", "verdict": "fail"}}\n')
    for event in follower.new_events():
        state.apply(event)
    assert state.counts["fail"] == 1 and state.current is None



def test_progress_shows_the_running_rig_its_simulated_time_and_faults() -> None:
    state = ProgressState()
    assert state.rig_text() == ""
    state.apply({"event": "status", "rigs": [{"rig": "f2-rig", "sim_s": 85.2, "scale": 10.0, "instruments": 14,
                                              "in_use": 13, "faults": {"site": ["no_reply"]}}]})
    assert state.rig_text() == "f2-rig: 85 s simulated (x10), 13/14 instruments, [red]faults: site no_reply[/]"


# -- a small suite through the plugin -------------------------------------------------------------------
SUITE = '''
    import allure
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pytest
    from hil.instruments.errors import InstrumentUnreachable
    from hil.ocpp.conformance import ConformanceFailure, octt, step


    def test_output_voltage_within_limits(measurements):
        measurements.parameter("seed", 7)
        measurements.record("output voltage", 400.2, "V", low=395.0, high=405.0)
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.plot([0, 10, 20, 30], [0, 34, 31, 16], label="site current")
        ax.axhline(32, color="black", label="limit")
        ax.axhspan(32, 33.6, color="grey", alpha=0.3, label="tolerance band")
        ax.set(xlabel="time [s]", ylabel="current per phase [A]", title="site current against the limit")
        ax.legend()
        measurements.figure(fig, "site current against the limit")
        plt.close(fig)


    def test_site_current_over_the_limit(measurements):
        measurements.record("site current", 36.0, "A", high=32.0)


    @allure.epic("OCPP 1.6")
    @allure.feature("Core")
    @allure.story("TC_003_CS Regular charging session")
    def test_status_notification():
        with step(2, "CP sends StatusNotification Charging"):
            raise ConformanceFailure("StatusNotification Preparing arrived, expected Charging")


    def test_meter_unreachable():
        try:
            raise InstrumentUnreachable("m1", "127.0.0.1:502", "no answer within 1 s")
        except InstrumentUnreachable as exc:
            pytest.fail(str(exc), pytrace=False)


    def test_broken_test_code():
        {}["missing"]


    @pytest.mark.skip(reason="needs a real bench")
    def test_on_a_bench():
        pass


    @octt("TC_B_01_CS")
    def test_tc_b_01_cs():
        assert True
'''
EXPECTED = {  # test -> (verdict, origin, Allure status)
    "test_output_voltage_within_limits": ("pass", None, "passed"),
    "test_site_current_over_the_limit": ("fail", DUT, "failed"),
    "test_status_notification": ("fail", DUT, "failed"),
    "test_meter_unreachable": ("error", RIG, "broken"),
    "test_broken_test_code": ("error", TEST, "broken"),
    "test_on_a_bench": ("skip", None, "skipped"),
    "test_tc_b_01_cs": ("pass", None, "passed"),
}


SPEC_SERVER = "https://docs.lab.example/ocpp201/"
"""A lab's document server: the small run's requirement links point there."""


def write_suite(root: Path) -> Path:
    """The small suite above as ``<root>/charging/test_limits.py``: area Charging, profile Limits."""
    folder = root / "charging"
    folder.mkdir(parents=True)
    (folder / "test_limits.py").write_text(textwrap.dedent(SUITE))
    return folder


@dataclass(frozen=True)
class SmallRun:
    """The small suite run once by ``hil run`` (with its HTML report) for every test that reads it."""

    run_dir: Path
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture(scope="session")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> SmallRun:
    """Runs ``hil run`` on the small suite once per pytest session, even across xdist workers."""
    root = tmp_path_factory.getbasetemp()
    shared = root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root
    base = shared / "evhil-small-run"
    with open(shared / "evhil-small-run.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = base / "outcome.json"
        if not done.exists():
            suite = write_suite(base / "suites")
            result = subprocess.run([sys.executable, "-m", "hil.cli", "run", str(suite), "--reports", str(base / "reports"),
                                     f"--pytest-arg=--allure-link-pattern=requirement:{SPEC_SERVER}{{}}"],
                                    capture_output=True, text=True, timeout=900, cwd=base)
            done.write_text(json.dumps({"returncode": result.returncode, "stdout": result.stdout, "stderr": result.stderr}))
    outcome = json.loads(done.read_text())
    runs = list((base / "reports").glob("2*"))
    assert len(runs) == 1, f"hil run made {runs}:\n{outcome['stdout']}\n{outcome['stderr']}"
    return SmallRun(runs[0], outcome["returncode"], outcome["stdout"], outcome["stderr"])


def test_hil_run_says_what_happened(small_run: SmallRun) -> None:
    assert small_run.returncode == 1, f"expected failures (exit 1):\n{small_run.stdout}\n{small_run.stderr}"
    assert "7 tests: 2 passed, 2 failed (device under test), 2 errors (rig or test), 1 skipped" in small_run.stdout
    assert "━" not in small_run.stdout and "\x1b[" not in small_run.stdout  # no live display off a terminal


def test_the_run_record_holds_every_verdict_measurement_and_figure(small_run: SmallRun) -> None:
    run_dir = small_run.run_dir
    record = json.loads((run_dir / RECORD).read_text())
    validate(record)
    assert record["run"]["complete"] and record["run"]["exit_status"] == 1 and record["run"]["collected"] == 7
    assert record["summary"] == {"total": 7, "pass": 2, "fail": 2, "error": 2, "skip": 1}
    tests = {t["name"]: t for t in record["tests"]}
    assert {name: (t["verdict"], t["origin"]) for name, t in tests.items()} == {k: v[:2] for k, v in EXPECTED.items()}
    voltage = tests["test_output_voltage_within_limits"]
    assert voltage["measurements"] == [{"name": "output voltage", "value": 400.2, "unit": "V", "low": 395.0,
                                        "high": 405.0, "verdict": "pass"}]
    assert voltage["parameters"] == {"seed": "7"}
    (figure,) = voltage["figures"]
    assert (run_dir / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {a["name"] for a in voltage["artefacts"]} == {"site current against the limit", "measurements"}
    assert all((run_dir / a["path"]).is_file() for a in voltage["artefacts"])
    assert tests["test_site_current_over_the_limit"]["message"].startswith(
        "hil.report.measurement.MeasurementOutOfLimits: site current = 36 A (limits at most 32 A): fail")
    assert "step 2 (CP sends StatusNotification Charging)" in tests["test_status_notification"]["message"]
    assert tests["test_on_a_bench"]["message"] == "needs a real bench"
    assert (tests["test_status_notification"]["area"], tests["test_status_notification"]["profile"]) == ("OCPP 1.6", "Core")
    assert (voltage["area"], voltage["profile"], voltage["case"]) == ("Charging", "Limits", "test_output_voltage_within_limits")
    assert all(t["duration_s"] >= 0 and set(t["phases"]) <= {"setup", "call", "teardown"} for t in tests.values())
    junit = ElementTree.parse(run_dir / record["artefacts"]["junit"])
    assert len(junit.findall(".//testcase")) == 7
    assert junit.find(".//testcase[@name='test_output_voltage_within_limits']/properties/property[@name='hil']") is not None


def test_allure_results_carry_labels_origins_environment_and_categories(small_run: SmallRun) -> None:
    results = small_run.run_dir / "allure-results"
    by_name = {}
    for path in results.glob("*-result.json"):
        data = json.loads(path.read_text())
        by_name[data["fullName"].rsplit("#", 1)[-1]] = data  # the test function (an OCTT case is titled by its id)
    assert {name: r["status"] for name, r in by_name.items()} == {k: v[2] for k, v in EXPECTED.items()}
    for name, (_, origin, _) in EXPECTED.items():
        labels = {(label["name"], label["value"]) for label in by_name[name]["labels"]}
        assert (("origin", origin) in labels) == (origin is not None), (name, labels)
        severity = "critical" if name == "test_tc_b_01_cs" else "normal"  # Core makes TC_B_01 mandatory
        assert ("severity", severity) in labels and any(k == "story" for k, _ in labels)
        assert {"name": "rig", "value": "emulated"} in [{k: p[k] for k in ("name", "value")} for p in by_name[name]["parameters"]]
    voltage = {(label["name"], label["value"]) for label in by_name["test_output_voltage_within_limits"]["labels"]}
    assert {("epic", "Charging"), ("feature", "Limits")} <= voltage
    ocpp = {(label["name"], label["value"]) for label in by_name["test_status_notification"]["labels"]}
    assert {("epic", "OCPP 1.6"), ("feature", "Core"), ("story", "TC_003_CS Regular charging session")} <= ocpp
    case = by_name["test_tc_b_01_cs"]
    assert {("epic", "OCPP 2.0.1 charging station"), ("feature", "B Provisioning"), ("octt", "TC_B_01_CS")} <= {
        (label["name"], label["value"]) for label in case["labels"]}
    # The case and the requirements it cites are links (the requirements through the run's link pattern).
    assert [(link["type"], link["name"], link["url"]) for link in case["links"]] == [
        ("tms", "TC_B_01_CS", "TC_B_01_CS"),
        *((("requirement", r, SPEC_SERVER + r) for r in ("B01.FR.01", "B01.FR.05", "B01.FR.09")))]
    record = json.loads((small_run.run_dir / "run-record.json").read_text())
    assert record["artefacts"]["traceability"] == "html/traceability.html"
    page = (small_run.run_dir / "html" / "traceability.html").read_text()
    assert '<tr id="B01.FR.05"><td>B01.FR.05</td><td>B01</td><td class="passed">passed</td>' in page
    assert '<tr id="TC_B_01_CS"><td>TC_B_01_CS</td><td>Cold Boot Charging Station - Accepted</td>' in page
    assert "evhil origin: rig (hil.instruments.errors.InstrumentUnreachable" in by_name["test_meter_unreachable"]["statusDetails"]["trace"]
    env = {p.findtext("key"): p.findtext("value") for p in ElementTree.parse(results / "environment.xml").getroot()}
    assert env["rig"] == "emulated" and env["rig kind"].startswith("emulated") and env["evhil"]
    assert json.loads((results / "categories.json").read_text()) == allure2_categories()


def test_hil_report_says_in_one_line_that_npm_is_missing(small_run: SmallRun, tmp_path: Path) -> None:
    bare = tmp_path / "bin"
    bare.mkdir()
    env = {**os.environ, "PATH": str(bare), "EVHIL_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-m", "hil.cli", "report", str(small_run.run_dir)], capture_output=True, text=True,
                          timeout=60, env=env)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: HTML report not built: npm not found on PATH"), done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_hil_report_names_a_missing_run(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "hil.cli", "report", "--reports", str(tmp_path)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and f"no run folder under {tmp_path}" in done.stderr


def test_live_progress_on_a_terminal_shows_the_test_and_the_counts(tmp_path: Path) -> None:
    import pty
    import struct
    import termios

    suite = tmp_path / "suites" / "slow"
    suite.mkdir(parents=True)
    (suite / "test_slow.py").write_text(textwrap.dedent('''
        import time

        def test_first_waits():
            time.sleep(1.5)

        def test_second_waits():
            time.sleep(1.5)
    '''))
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "hil.cli", "run", str(suite), "--reports", str(tmp_path / "reports"),
                             "--no-report", "--workers", "1"],  # one test after the other, each shown running
                            stdin=subprocess.DEVNULL, stdout=follower, stderr=follower, cwd=tmp_path,
                            env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "160", "LINES": "40"})
    os.close(follower)
    chunks = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if not select.select([leader], [], [], 1.0)[0]:
            continue
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        chunks.append(chunk)
    assert proc.wait(timeout=120) == 0
    os.close(leader)
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode("utf-8", "replace"))
    assert "::test_first_waits" in screen and "::test_second_waits" in screen, screen  # the test running now
    assert re.search(r"1/2 +1 passed 0 failed 0 errors 0 skipped", screen), screen
    assert "2 tests: 2 passed, 0 failed (device under test), 0 errors (rig or test), 0 skipped" in screen
