"""The HTML report in a real browser: ``hil run`` on a small suite builds it with Allure 3, headless
Chromium (Debian's, installed here when missing) opens it from the file system, the test counts it shows
match the run record, the suites are grouped by area and profile, a PNG plot attachment renders, a
screenshot is saved next to the report (``html/screenshot.png``), an OCTT case shows its requirement
links, and the requirements traceability page beside the report shows the case's outcome."""

from __future__ import annotations

import base64
import fcntl
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from test_report import EXPECTED, SPEC_SERVER, SmallRun, small_run  # noqa: F401 - the run is shared across modules and workers

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _install_chromium() -> str | None:
    """Install Debian's chromium with apt-get; returns why it could not be, or None."""
    if shutil.which("apt-get") is None:
        return "no apt-get on this machine"
    if os.geteuid() != 0:
        return "not root, so apt-get cannot install it"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with open(os.path.join(tempfile.gettempdir(), "evhil-chromium-install.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one install when several workers ask
        if CHROMIUM.exists():
            return None
        for command in (["apt-get", "update", "-q"],
                        ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"]):
            try:
                done = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
            except subprocess.TimeoutExpired:
                return f"{' '.join(command)} did not finish in 900 s"
            if done.returncode != 0:
                return f"{' '.join(command)} failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}"
    return None if CHROMIUM.exists() else "apt-get installed chromium but /usr/bin/chromium is missing"


@pytest.fixture(scope="module")
def chromium() -> Path:
    """Debian's headless Chromium, installed when missing (skips only when it cannot be installed)."""
    if not CHROMIUM.exists():
        reason = _install_chromium()
        if reason is not None:
            pytest.skip(f"Chromium is needed to check the HTML report and cannot be installed: {reason}")
    return CHROMIUM


class Page:
    """One headless Chromium tab driven over the Chrome DevTools Protocol."""

    def __init__(self, executable: Path, profile: Path, size: tuple[int, int] = (1400, 1000)) -> None:
        self.proc = subprocess.Popen(
            [str(executable), *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
             f"--window-size={size[0]},{size[1]}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not open its DevTools port (exit status {self.proc.poll()})")
            time.sleep(0.05)
        port, path = port_file.read_text().splitlines()[:2]
        self._stack = ExitStack()
        self.ws = self._stack.enter_context(connect(f"ws://127.0.0.1:{port}{path}", max_size=None, open_timeout=10))
        self._ids = itertools.count(1)
        target = self._send("Target.createTarget", None, url="about:blank")["targetId"]
        self.session = self._send("Target.attachToTarget", None, targetId=target, flatten=True)["sessionId"]
        self._send("Page.enable", self.session)

    def _send(self, method: str, session: str | None, **params: Any) -> dict[str, Any]:
        i = next(self._ids)
        self.ws.send(json.dumps({"id": i, "method": method, "params": params, **({"sessionId": session} if session else {})}))
        while True:
            reply = json.loads(self.ws.recv(timeout=30))
            if reply.get("id") == i:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]  # type: ignore[no-any-return]

    def open(self, url: str) -> None:
        self._send("Page.navigate", self.session, url=url)

    def eval(self, expression: str) -> Any:
        result = self._send("Runtime.evaluate", self.session, expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}: {result['exceptionDetails'].get('exception', {}).get('description')}")
        return result["result"].get("value")

    def wait_for(self, expression: str, what: str, timeout: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.eval(expression)
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"the report never showed {what} within {timeout:g} s; page text: "
                             f"{self.eval('document.body.innerText')[:500]!r}")

    def screenshot(self, path: Path) -> None:
        data = self._send("Page.captureScreenshot", self.session, format="png")["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        self._stack.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture
def page(chromium: Path, tmp_path: Path) -> Iterator[Page]:
    profile = tmp_path / "chromium-profile"  # a fresh profile every time
    profile.mkdir()
    tab = Page(chromium, profile)
    try:
        yield tab
    finally:
        tab.close()


def _click(page: Page, selector: str, text: str, inner: str | None = None) -> None:
    """Click the ``selector`` element containing ``text`` (or its ``inner`` element)."""
    found = page.eval(f"""(() => {{
        const e = [...document.querySelectorAll({json.dumps(selector)})].find(e => e.textContent.includes({json.dumps(text)}));
        const target = e && {json.dumps(inner)} ? e.querySelector({json.dumps(inner)}) : e;
        if (!target) return false;
        target.click();
        return true; }})()""")
    assert found, f"the report has no {selector} with {text!r}"


def test_the_html_report_shows_the_counts_the_groups_and_a_plot(page: Page, small_run: SmallRun) -> None:
    assert small_run.returncode == 1, f"expected failures (exit 1):\n{small_run.stdout}\n{small_run.stderr}"
    index = Path(small_run.stdout.strip().splitlines()[-1])  # hil run prints the report's path last
    assert index.name == "index.html" and index.parent.name == "html" and index.is_file(), small_run.stdout
    assert index.parent.parent == small_run.run_dir
    record = json.loads((small_run.run_dir / "run-record.json").read_text())
    assert record["artefacts"]["html"] == "html/index.html"
    assert "googletagmanager" not in index.read_text()
    started = time.monotonic()

    page.open(index.as_uri())
    page.wait_for("!!document.querySelector('[data-testid=metadata-item-total] [data-testid=metadata-value]')", "its totals")
    shown = page.eval("""Object.fromEntries(['total', 'passed', 'failed', 'broken', 'skipped'].map(k => {
        const e = document.querySelector(`[data-testid=metadata-item-${k}] [data-testid=metadata-value]`);
        return [k, e ? Number(e.textContent) : 0]; }))""")
    s = record["summary"]
    assert shown == {"total": s["total"], "passed": s["pass"], "failed": s["fail"], "broken": s["error"], "skipped": s["skip"]}
    assert shown == {"total": len(EXPECTED), "passed": 2, "failed": 2, "broken": 2, "skipped": 1}

    sections = page.eval("[...document.querySelectorAll('[data-testid=tree-section-title]')].map(e => e.textContent.trim())")
    assert {"Charging", "Limits", "OCPP 1.6", "Core"} <= set(sections), sections  # area, then profile
    categories = page.eval("document.querySelector('[data-testid=nav-tab-categories]').textContent")
    assert "Categories" in categories and categories.strip().endswith("3"), categories

    _click(page, "[data-testid=tree-leaf]", "test_output_voltage_within_limits")
    page.wait_for("!!document.querySelector('[data-testid=test-result-attachment-header]')", "the test's attachments")
    _click(page, "[data-testid=test-result-attachment-header]", "site current against the limit", inner="button")
    size = page.wait_for("""(() => { const i = [...document.querySelectorAll('[data-testid=test-result-attachment] img')]
        .find(i => i.complete && i.naturalWidth > 0); return i ? [i.naturalWidth, i.naturalHeight] : null; })()""",
                         "the plot image")
    assert size == [600, 300]  # the 6 x 3 in figure at 100 dpi
    colours = page.eval("""(() => { const i = document.querySelector('[data-testid=test-result-attachment] img');
        const c = document.createElement('canvas'); c.width = i.naturalWidth; c.height = i.naturalHeight;
        const g = c.getContext('2d'); g.drawImage(i, 0, 0);
        const d = g.getImageData(0, 0, c.width, c.height).data, seen = new Set();
        for (let k = 0; k < d.length; k += 4 * 7) seen.add(d[k] << 16 | d[k + 1] << 8 | d[k + 2]);
        return seen.size; })()""")
    assert colours > 10, f"the plot rendered as {colours} colour(s): blank"
    page.eval("document.querySelector('[data-testid=test-result-attachment] img').scrollIntoView({block: 'center'})")
    time.sleep(0.3)
    shot = index.with_name("screenshot.png")
    page.screenshot(shot)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000

    # An OCTT case links to the requirements it cites; the link opens the run's traceability page there.
    page.open(index.as_uri())
    page.wait_for("!!document.querySelector('[data-testid=tree-section-title]')", "its tree")
    _click(page, "[data-testid=tree-section-title]", "OCPP 2.0.1 charging station")  # collapsed: only passed tests
    page.wait_for("""[...document.querySelectorAll('[data-testid=tree-section-title]')]
        .some(e => e.textContent.includes('B Provisioning'))""", "the case's profile")
    _click(page, "[data-testid=tree-section-title]", "B Provisioning")
    page.wait_for("""[...document.querySelectorAll('[data-testid=tree-leaf]')]
        .some(e => e.textContent.includes('TC_B_01_CS'))""", "the OCTT case")
    _click(page, "[data-testid=tree-leaf]", "TC_B_01_CS Cold Boot Charging Station")
    href = page.wait_for("""(() => { const a = [...document.querySelectorAll('[data-testid=test-result-meta-link] a')]
        .find(a => a.textContent.trim() === 'B01.FR.05'); return a ? a.href : null; })()""", "the requirement link B01.FR.05")
    assert href == SPEC_SERVER + "B01.FR.05", href  # not followed: the document server is the lab's
    shown = page.eval("[...document.querySelectorAll('[data-testid=test-result-meta-link]')].map(e => e.textContent.trim())")
    assert shown == ["TC_B_01_CS", "B01.FR.01", "B01.FR.05", "B01.FR.09"], shown
    # The traceability page beside the report: the requirement, the case checking it, its outcome.
    page.open(index.with_name("traceability.html").as_uri() + "#B01.FR.05")
    row = page.wait_for("(() => { const r = document.getElementById('B01.FR.05'); return r ? r.innerText : null; })()",
                        "the requirement's row on the traceability page")
    assert "TC_B_01_CS" in row and "passed" in row, row
    print(f"browser checks took {time.monotonic() - started:.1f} s; screenshot {shot}")
