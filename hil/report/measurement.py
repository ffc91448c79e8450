"""Measurements and figures a test records: the same record feeds the Allure step, the measurement table
attached to the test, the JUnit properties and the run record.

In a test, ask for the ``measurements`` fixture::

    def test_output_follows_the_set_point(power_source, measurements):
        v = power_source.measure().voltage
        measurements.record("output voltage", v, "V", low=395.0, high=405.0)
        measurements.figure(fig, "output voltage against time")   # a matplotlib Figure or a PNG file

A measurement outside its limits does not stop the test; the test fails at its end, naming every
measurement that was out (``MeasurementOutOfLimits``, a device-under-test failure).
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import allure

Verdict = Literal["pass", "fail", "info"]


class MeasurementOutOfLimits(AssertionError):
    """One or more measurements of a test were outside their limits."""


@dataclass(frozen=True)
class Measurement:
    """A named value with its unit and optional limits (inclusive): ``low <= value <= high``."""

    name: str
    value: float
    unit: str
    low: float | None = None
    high: float | None = None

    @property
    def verdict(self) -> Verdict:
        """``pass`` within the limits, ``fail`` outside (or not a number), ``info`` without limits."""
        if self.low is None and self.high is None:
            return "info"
        if math.isnan(self.value):
            return "fail"
        if self.low is not None and self.value < self.low:
            return "fail"
        if self.high is not None and self.value > self.high:
            return "fail"
        return "pass"

    def limits_text(self) -> str:
        """The limits in words, e.g. ``395 to 405 V``, ``at most 32 A``, or ``""``."""
        u = f" {self.unit}" if self.unit else ""
        if self.low is not None and self.high is not None:
            return f"{self.low:g} to {self.high:g}{u}"
        if self.low is not None:
            return f"at least {self.low:g}{u}"
        if self.high is not None:
            return f"at most {self.high:g}{u}"
        return ""

    def text(self) -> str:
        """One line, e.g. ``output voltage = 400.2 V (limits 395 to 405 V): pass``."""
        u = f" {self.unit}" if self.unit else ""
        limits = self.limits_text()
        return f"{self.name} = {self.value:.6g}{u}" + (f" (limits {limits}): {self.verdict}" if limits else "")

    def to_dict(self) -> dict[str, Any]:
        """As stored in the run record: name, value, unit, low, high, verdict."""
        return {**asdict(self), "value": _json_number(self.value), "verdict": self.verdict}


def _json_number(value: float) -> float | None:
    return None if math.isnan(value) or math.isinf(value) else value


def slug(text: str) -> str:
    """``text`` as a file name part: letters, digits, ``-`` and ``_`` only."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")[:120] or "x"


@dataclass
class Measurements:
    """What one test recorded. ``figure_dir`` is where figures are written (``None``: attached only)."""

    test_id: str
    figure_dir: Path | None = None
    items: list[Measurement] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    parameters: dict[str, str] = field(default_factory=dict)

    def record(self, name: str, value: float, unit: str, *, low: float | None = None,
               high: float | None = None) -> Measurement:
        """Record ``value`` [``unit``] under ``name``, judged against ``low``/``high`` (inclusive, in the
        same unit). Shows as an Allure step (failed when out of limits); returns the measurement."""
        if not name:
            raise ValueError("a measurement needs a name")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"measurement {name!r}: value {value!r} is not a number") from None
        if low is not None and high is not None and low > high:
            raise ValueError(f"measurement {name!r}: low limit {low} is above high limit {high}")
        m = Measurement(name, number, unit, None if low is None else float(low), None if high is None else float(high))
        self.items.append(m)
        try:
            with allure.step(m.text()):
                if m.verdict == "fail":
                    raise MeasurementOutOfLimits(m.text())
        except MeasurementOutOfLimits:
            pass  # the step shows failed; the test fails at its end (see ``check``)
        return m

    def figure(self, figure: Any, name: str) -> Path | None:
        """Attach a plot: a matplotlib ``Figure`` (saved as PNG) or the path of a PNG file. Written under
        the run's ``figures/`` folder when there is a run folder; returns the file, or ``None``."""
        if isinstance(figure, (str, Path)):
            source = Path(figure)
            if not source.is_file():
                raise FileNotFoundError(f"figure {name!r}: no file {source}")
            png = source.read_bytes()
        elif hasattr(figure, "savefig"):
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png", dpi=100)
            png = buffer.getvalue()
        else:
            raise TypeError(f"figure {name!r}: expected a matplotlib Figure or a PNG path, got {type(figure).__name__}")
        path: Path | None = None
        if self.figure_dir is not None:
            self.figure_dir.mkdir(parents=True, exist_ok=True)
            path = self.figure_dir / f"{slug(name)}.png"
            path.write_bytes(png)
            self.figures.append(path)
        allure.attach(png, name=name, attachment_type=allure.attachment_type.PNG)
        return path

    def parameter(self, name: str, value: object) -> None:
        """A parameter of this run of the test (controller, scenario, seed...): shown in Allure, stored
        in the run record."""
        self.parameters[name] = str(value)
        allure.dynamic.parameter(name, str(value))

    @property
    def failed(self) -> list[Measurement]:
        """The measurements outside their limits."""
        return [m for m in self.items if m.verdict == "fail"]

    def table_csv(self) -> str:
        """The measurements as CSV (name, value, unit, low, high, verdict): Allure shows it as a table."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["measurement", "value", "unit", "low", "high", "verdict"])
        for m in self.items:
            writer.writerow([m.name, f"{m.value:.6g}", m.unit, "" if m.low is None else f"{m.low:g}",
                             "" if m.high is None else f"{m.high:g}", m.verdict])
        return out.getvalue()

    def check(self) -> None:
        """Attach the measurement table; raise ``MeasurementOutOfLimits`` naming every failed one."""
        __tracebackhide__ = True  # the failure is the test's, not this frame's
        if self.items:
            allure.attach(self.table_csv(), name="measurements", attachment_type=allure.attachment_type.CSV)
        failed = self.failed
        if failed:
            raise MeasurementOutOfLimits("; ".join(m.text() for m in failed))
