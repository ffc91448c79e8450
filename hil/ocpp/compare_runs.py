"""Compare the verdict of every case of an OCPP charger suite with evhil's emulator in process and out of
process.

    python -m hil.ocpp.compare_runs                       # the whole 1.6 and 2.0.1 suites
    python -m hil.ocpp.compare_runs --ocpp 1.6 -k "tc_056_cs or tc_057_cs" --together

In process the suite runs on the emulated rig (``--rig``, default ``rigs/emulated.yaml``) with the
``emulated`` adapter. Out of process ``hil charge-point`` runs the same emulator on the same rig in its own
process (``hil.ocpp.bench_charger.ChargerProcess``) and the suite reaches it only through the ``command``
adapter and the Modbus meters of the rig file it writes, as it would a charger on a bench. Each run is a
pytest child writing JUnit XML under ``--out``; the cases whose verdict differs are printed with both
messages, then the counts and wall times. Exit status 0 when every case has the same verdict, 1 otherwise.

Times: seconds.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from hil.ocpp.bench_charger import ChargerProcess
from hil.ocpp.fixtures import EMULATED_201
from hil.ocpp.precheck import SUITES, outcomes_from_junit
from hil.rig.loader import DEFAULT_RIG, load_rig

SUITE = {"1.6": SUITES / "ocpp16", "2.0.1": SUITES / "ocpp201"}
SETTINGS = {"1.6": {}, "2.0.1": EMULATED_201}
"""What the emulator is built with out of process: the same as the in-process fixtures build it with."""
Outcomes = dict[str, tuple[str, str]]
"""Case id -> (passed | failed | error | skipped, message)."""


@dataclass
class Comparison:
    """The verdicts of one suite's cases in both runs, and how long each run took [s]."""

    version: str
    in_process: Outcomes
    out_of_process: Outcomes
    seconds: dict[str, float] = field(default_factory=dict)
    resets: int | None = None
    """Factory resets the out-of-process charger saw (one per case that reached the charger fixture)."""

    @property
    def cases(self) -> list[str]:
        return sorted(set(self.in_process) | set(self.out_of_process))

    def differing(self) -> list[str]:
        """Cases whose verdict differs (or that ran in one run only)."""
        return [c for c in self.cases if self.in_process.get(c, ("missing", ""))[0]
                != self.out_of_process.get(c, ("missing", ""))[0]]

    def report(self) -> str:
        lines = [f"OCPP {self.version}: {len(self.cases) - len(self.differing())} of {len(self.cases)} cases with the "
                 f"same verdict, {len(self.differing())} different (in process {self.seconds.get('in', 0):.0f} s, "
                 f"out of process {self.seconds.get('out', 0):.0f} s"
                 + (f", {self.resets} factory resets" if self.resets is not None else "") + ")"]
        counts = {run: _count(outcomes) for run, outcomes in (("in process", self.in_process),
                                                               ("out of process", self.out_of_process))}
        lines += [f"  {run}: {text}" for run, text in counts.items()]
        for case in self.differing():
            for run, outcomes in (("in process", self.in_process), ("out of process", self.out_of_process)):
                verdict, message = outcomes.get(case, ("missing", "did not run"))
                lines.append(f"  {case} {run}: {verdict} {message[:300]}".rstrip())
        return "\n".join(lines)


def _count(outcomes: Outcomes) -> str:
    verdicts = [v for v, _ in outcomes.values()]
    return ", ".join(f"{verdicts.count(v)} {v}" for v in ("passed", "failed", "error", "skipped") if v in verdicts)


def pytest_command(version: str, rig: Path, junit: Path, select: list[str]) -> list[str]:
    """The pytest child that runs the ``version`` suite on ``rig`` (``select``: more pytest arguments)."""
    return [sys.executable, "-m", "pytest", str(SUITE[version]), "--rig", str(rig), "-p", "no:cacheprovider", "-q",
            f"--junitxml={junit}", "-o", "junit_family=xunit2", *select]


def _finish(process: subprocess.Popen[bytes], deadline: float, what: str) -> None:
    try:
        process.wait(max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
        raise TimeoutError(f"{what}: pytest still running at the deadline; killed") from None


def compare(version: str, folder: Path, *, rig: Path = DEFAULT_RIG, select: list[str] | None = None,
            together: bool = False, timeout: float = 3600.0) -> Comparison:
    """Run the ``version`` suite (``select``: pytest arguments such as ``-k``) in process and out of process
    on ``rig``, one after the other or, with ``together``, at the same time; outputs go to ``folder``.
    ``TimeoutError`` when a run outlasts ``timeout``; every child is gone when this returns."""
    folder.mkdir(parents=True, exist_ok=True)
    connectors = load_rig(rig).dut.connectors
    names = {"in": f"in-process-{version}", "out": f"out-of-process-{version}"}
    junit = {run: folder / f"{name}.xml" for run, name in names.items()}
    for path in junit.values():
        path.unlink(missing_ok=True)
    deadline = time.monotonic() + timeout
    seconds: dict[str, float] = {}
    running: dict[str, subprocess.Popen[bytes]] = {}
    logs = {run: open(folder / f"pytest-{name}.log", "wb") for run, name in names.items()}
    started: dict[str, float] = {}
    charger = ChargerProcess(folder, ocpp=version, rig=rig, connectors=connectors, settings=SETTINGS[version])
    try:
        def launch(run: str, rig_file: Path) -> None:
            started[run] = time.monotonic()
            running[run] = subprocess.Popen(pytest_command(version, rig_file, junit[run], select or []),
                                            stdout=logs[run], stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

        def wait(run: str) -> None:
            _finish(running[run], deadline, f"{run} of process, OCPP {version}")
            seconds[run] = time.monotonic() - started[run]

        launch("in", rig)
        if not together:
            wait("in")
        charger.start()
        launch("out", charger.rig_path)
        wait("out")
        if together:
            wait("in")
        resets = int(charger.status().get("resets", 0))
    finally:
        for process in running.values():
            if process.poll() is None:
                process.kill()
                process.wait(10)
        charger.stop()
        for log in logs.values():
            log.close()
    outcomes = {run: {case: (o.outcome, o.message) for case, o in outcomes_from_junit(path).items()} if path.exists()
                else {} for run, path in junit.items()}
    return Comparison(version, outcomes["in"], outcomes["out"], seconds, resets)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hil.ocpp.compare_runs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ocpp", action="append", choices=sorted(SUITE), help="suite version (repeatable; default both)")
    parser.add_argument("--rig", type=Path, default=DEFAULT_RIG, help="emulated rig of both runs")
    parser.add_argument("--out", type=Path, default=Path("reports") / "compare-runs", help="folder for logs and JUnit XML")
    parser.add_argument("-k", dest="keyword", help="pytest -k expression: only these cases")
    parser.add_argument("--together", action="store_true", help="run in process and out of process at the same time")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per suite before the runs are killed")
    args = parser.parse_args(argv)
    same = True
    for version in args.ocpp or ["1.6", "2.0.1"]:
        result = compare(version, args.out, rig=args.rig, select=["-k", args.keyword] if args.keyword else [],
                         together=args.together, timeout=args.timeout)
        print(result.report(), flush=True)
        same = same and not result.differing() and bool(result.cases)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
