"""The HTML report of a run, built by Allure 3 (the npm package ``allure``; Node.js, no Java).

On first use the pinned ``allure`` is installed with npm into evhil's cache folder
(``$EVHIL_CACHE``, else ``$XDG_CACHE_HOME/evhil``, else ``~/.cache/evhil``); later builds need neither
npm nor the network. A reinstall tries npm's own cache first (``--offline``), so it works without the
registry once the packages were fetched on this machine.

The report is one self-contained ``index.html`` (it opens from the file system), grouped by area and
profile (Allure epic and feature), with the categories of ``hil.report.categories`` and the history of
earlier runs kept in ``<reports>/allure-history.jsonl``. Allure's analytics tag is taken out of the page.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from hil.report import traceability
from hil.report.categories import allure3_categories

ALLURE_VERSION = "3.18.0"
"""The Allure 3 release evhil builds reports with (npm package ``allure``)."""
HISTORY = "allure-history.jsonl"
INSTALL_TIMEOUT_S = 600.0
BUILD_TIMEOUT_S = 600.0


class ReportBuildError(Exception):
    """The HTML report could not be built; the message says what is missing and what to do."""


def cache_dir() -> Path:
    """Where evhil keeps tools it installs itself."""
    if os.environ.get("EVHIL_CACHE"):
        return Path(os.environ["EVHIL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "evhil"


def _tail(text: str, lines: int = 6) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:] if line.strip())


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # two runs on one machine install once
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def allure_cli(log: Callable[[str], None] = lambda _: None, root: Path | None = None) -> Path:
    """The ``cli.js`` of the pinned Allure 3, installed with npm on first use. ``log`` hears what is done."""
    home = (root or cache_dir()) / f"allure-{ALLURE_VERSION}"
    cli = home / "node_modules" / "allure" / "cli.js"
    done = home / ".installed"
    if done.is_file() and cli.is_file():
        return cli
    with _locked(home.with_name(home.name + ".lock")):
        if done.is_file() and cli.is_file():
            return cli
        npm = shutil.which("npm")
        if npm is None:
            raise ReportBuildError(
                f"npm not found on PATH: the HTML report needs Node.js and npm once, to install allure {ALLURE_VERSION} "
                f"into {home} (or pass --no-report; the results are in allure-results/ and run-record.json)")
        home.mkdir(parents=True, exist_ok=True)
        (home / "package.json").write_text(json.dumps(
            {"name": "evhil-allure", "private": True, "description": "Allure 3 for evhil reports",
             "dependencies": {"allure": ALLURE_VERSION}}, indent=2) + "\n")
        log(f"installing allure {ALLURE_VERSION} with npm into {home} (once)")
        base = [npm, "install", "--no-audit", "--no-fund", "--no-update-notifier", "--loglevel=error"]
        failure = ""
        for mode in ("--offline", "--prefer-offline"):  # npm's cache first: works without the registry
            try:
                done_run = subprocess.run([*base, mode], cwd=home, capture_output=True, text=True,
                                          timeout=INSTALL_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                failure = f"npm install {mode} did not finish within {INSTALL_TIMEOUT_S:g} s"
                continue
            if done_run.returncode == 0 and cli.is_file():
                done.write_text(f"{ALLURE_VERSION}\n")
                return cli
            failure = _tail(done_run.stderr or done_run.stdout) or f"exit status {done_run.returncode}"
        raise ReportBuildError(f"npm could not install allure {ALLURE_VERSION} into {home}: {failure}")


@dataclass(frozen=True)
class BuiltReport:
    """A built HTML report: ``index`` to open, the requirements ``traceability`` page beside it, and how
    long the build took [s]."""

    index: Path
    traceability: Path
    seconds: float


def report_config(output: Path, history: Path, name: str, append_history: bool) -> dict[str, object]:
    """The Allure 3 configuration (``allurerc.json``) for one run."""
    return {
        "name": name,
        "output": str(output),
        "historyPath": str(history),
        "appendHistory": append_history,
        "categories": allure3_categories(),
        "plugins": {"awesome": {"options": {
            "reportName": name, "singleFile": True, "reportLanguage": "en",
            "groupBy": ["epic", "feature"], "stepTreeExpansion": "expand_failed_only",
        }}},
    }


def build_html(run_dir: Path, *, name: str | None = None, log: Callable[[str], None] = lambda _: None,
               history: Path | None = None) -> BuiltReport:
    """Build ``<run_dir>/html/index.html`` from ``<run_dir>/allure-results``.

    History is read from and (once per run) appended to ``history`` (default: ``allure-history.jsonl``
    in the folder holding the run folders), so the report shows each test's trend over earlier runs.
    """
    results = run_dir / "allure-results"
    if not results.is_dir() or not any(results.glob("*-result.json")):
        raise ReportBuildError(f"{run_dir}: no Allure results in {results} (did the run start any test?)")
    node = shutil.which("node")
    cli = allure_cli(log)
    if node is None:
        raise ReportBuildError("node not found on PATH: the HTML report is built by Allure 3, which runs on Node.js")
    output = run_dir / "html"
    history = history or run_dir.parent / HISTORY
    marker = run_dir / ".history-appended"  # rebuilding a report must not count the run twice
    config = report_config(output.resolve(), history.resolve(), name or f"evhil run {run_dir.name}",
                           append_history=not marker.exists())
    config_path = run_dir / "allurerc.json"
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    if output.exists():
        shutil.rmtree(output)
    started = time.monotonic()
    try:
        done = subprocess.run([node, str(cli), "generate", str(results.resolve()), "--config", str(config_path.resolve())],
                              cwd=run_dir, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S,
                              env={**os.environ, "NO_COLOR": "1"})
    except subprocess.TimeoutExpired:
        raise ReportBuildError(f"allure generate did not finish within {BUILD_TIMEOUT_S:g} s") from None
    index = output / "index.html"
    if done.returncode != 0 or not index.is_file():
        raise ReportBuildError(f"allure generate failed (exit status {done.returncode}): "
                               f"{_tail(done.stderr or done.stdout) or 'no output'}")
    index.write_text(without_analytics(index.read_text(encoding="utf-8")), encoding="utf-8")
    page = traceability.write(results, output / traceability.PAGE)
    marker.write_text(f"{history}\n")
    return BuiltReport(index, page, time.monotonic() - started)


_ANALYTICS = re.compile(
    r"\s*<script async src=\"https://www\.googletagmanager\.com/gtag/js\?id=[^\"]*\"></script>"
    r"\s*<script>\s*window\.dataLayer = window\.dataLayer \|\| \[\];.*?</script>", re.S)


def without_analytics(html: str) -> str:
    """The report page without Allure's Google Analytics tag: a report opened at a bench or from a CI
    artefact must not call out to the internet (and on a closed network the call only fails)."""
    return _ANALYTICS.sub("", html, count=1)
