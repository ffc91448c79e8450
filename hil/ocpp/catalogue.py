"""OCTT test-case catalogues (OCPP 1.6 and 2.0.1 Ed.3), certification profiles and the pre-check report.

Reference data (IDs, names, profiles, M/C flags) ships in ``catalogue/`` next to this module; see its
README for sources and the CC BY-ND 4.0 attribution to the Open Charge Alliance. A product's
*declaration* (YAML: product, version, SUT, claimed profiles, exclusions) selects the applicable cases
(``applicable``); ``precheck_report`` sets test outcomes against them, per profile.

Test functions are named after the case: ``TC_B_57_CS`` <-> ``test_tc_b_57_cs`` (``pytest_name``).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

Version = Literal["1.6", "2.0.1"]
Sut = Literal["CS", "CSMS"]
Requirement = Literal["M", "C", "-"]

DATA = Path(__file__).with_name("catalogue")
_FILES = {"1.6": "octt-1.6.csv", "2.0.1": "octt-2.0.1.csv"}
_ID = {"1.6": re.compile(r"TC_\d{3}(_\d+)?_(CS|CSMS)"), "2.0.1": re.compile(r"TC_[A-Z]_\d+_(CS|CSMS)")}
_USE_CASE = re.compile(r"\b[A-P]\d{2}\b")
_RENAMED_DUPLICATES = {"TC_C_28_CS": "TC_C_58_CS"}
"""Part 6 Ed.3 prints TC_C_28_CS in two tables; the second is captioned TC_C_58_CS (Part 5 agrees)."""
_INCLUDES_16 = {"Firmware Management": ("Firmware Management (Diagnostics)",)}
"""1.6: GetDiagnostics belongs to the Firmware Management profile."""
OUTCOMES = ("passed", "failed", "skipped", "error")


class UnknownCaseError(KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class DeclarationError(ValueError):
    """A declaration file that cannot be read or does not validate (one-line message: file, field)."""


@dataclass(frozen=True)
class TestCase:
    """One OCTT test case; ``profile`` is the 1.6 feature profile or the 2.0.1 functional block section."""

    __test__ = False  # not a pytest test class

    id: str
    version: Version
    sut: Sut
    profile: str
    name: str
    block: str | None = None
    use_cases: tuple[str, ...] = ()
    requirements: tuple[str, ...] = ()
    """2.0.1: the Part 2 functional requirements the case checks (``B01.FR.01``); none for 1.6."""

    @property
    def base_id(self) -> str:
        return self.id.rsplit("_", 1)[0]


@lru_cache(maxsize=None)
def load(version: Version) -> dict[str, TestCase]:
    """All cases of a version by id, in document order (2.0.1 use cases: the Part 2 ids mentioned)."""
    if version not in _FILES:
        raise ValueError(f"unknown OCPP version {version!r} (known: 1.6, 2.0.1)")
    cases: dict[str, TestCase] = {}
    two = version == "2.0.1"
    with open(DATA / _FILES[version], encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            cid = row["id"]
            if cid in cases:
                if _RENAMED_DUPLICATES.get(cid) in cases or cid not in _RENAMED_DUPLICATES:
                    raise ValueError(f"duplicate test case id {cid} in {_FILES[version]}")
                cid = _RENAMED_DUPLICATES[cid]
            cases[cid] = TestCase(
                id=cid, version=version, sut=row["sut"],  # type: ignore[arg-type]
                profile=row["section"] if two else row["profile"], name=row["name"],
                block=row["block"] if two else None,
                use_cases=tuple(dict.fromkeys(_USE_CASE.findall(row["use_cases"]))) if two else (),
                requirements=tuple(row["requirements"].split()) if two else (),
            )
    return cases


def version_of(id: str) -> Version:
    for version, pattern in _ID.items():
        if pattern.fullmatch(id):
            return version  # type: ignore[return-value]
    raise UnknownCaseError(f"{id!r} is not an OCTT test case id (OCPP 1.6: TC_036_CS, 2.0.1: TC_B_57_CS)")


def case(id: str) -> TestCase:
    version = version_of(id)
    try:
        return load(version)[id]
    except KeyError:
        raise UnknownCaseError(f"unknown OCTT test case {id!r} for OCPP {version}") from None


def pytest_name(id: str) -> str:
    """``TC_036_CS`` -> ``test_tc_036_cs``."""
    version_of(id)
    return "test_" + id.lower()


def case_from_test_name(name: str) -> TestCase:
    """``test_tc_b_57_cs`` (also a node id ``path::test_tc_b_57_cs[param]``) -> the case."""
    base = name.rsplit("::", 1)[-1].split("[", 1)[0]
    if not base.startswith("test_tc_"):
        raise ValueError(f"{name!r} is not a test named after an OCTT case (test_tc_...)")
    return case(base[5:].upper())


@lru_cache(maxsize=None)
def _certification() -> dict[str, dict[str, tuple[str, str]]]:
    """profile -> base_id -> (charging_station, csms) flags."""
    table: dict[str, dict[str, tuple[str, str]]] = {}
    with open(DATA / "certification-2.0.1.csv", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            table.setdefault(row["profile"], {})[row["base_id"]] = (row["charging_station"], row["csms"])
    return table


def certification_profiles() -> list[str]:
    """The OCPP 2.0.1 certification profiles, Core first."""
    return list(_certification())


def requirement(base_id: str, profile: str, sut: Sut) -> Literal["M", "C"] | None:
    """2.0.1 certification flag of a case (``TC_A_01``; a full id also works) in a profile for a SUT."""
    if profile not in _certification():
        raise ValueError(f"unknown OCPP 2.0.1 certification profile {profile!r}")
    flags = _certification()[profile].get(re.sub(r"_(CS|CSMS)$", "", base_id))
    flag = flags[0 if sut == "CS" else 1] if flags else ""
    return flag or None  # type: ignore[return-value]


def known_profiles(version: Version) -> list[str]:
    """Profile names a declaration may claim: 1.6 feature profiles, 2.0.1 certification profiles."""
    if version == "2.0.1":
        return certification_profiles()
    return list(dict.fromkeys(c.profile for c in load("1.6").values()))


class Declaration(BaseModel):
    """What a product claims: version, SUT, profiles, optional features (recorded only), exclusions."""

    model_config = ConfigDict(extra="forbid")

    product: str
    ocpp_version: Version
    sut: Sut = "CS"
    profiles: list[str] = Field(min_length=1)
    features: list[str] = []
    excluded: dict[str, str] = {}
    """case id -> why the product declares it not applicable."""

    @field_validator("ocpp_version", mode="before")
    @classmethod
    def _yaml_number(cls, value: Any) -> Any:
        return str(value) if isinstance(value, float) else value  # YAML reads 1.6 as a float

    @field_validator("profiles")
    @classmethod
    def _known_profiles(cls, value: list[str], info: ValidationInfo) -> list[str]:
        version = info.data.get("ocpp_version")
        if version:
            known = known_profiles(version)
            unknown = [p for p in value if p not in known]
            if unknown:
                raise ValueError(f"unknown OCPP {version} profile(s) {unknown} (known: {', '.join(known)})")
        return value

    @field_validator("excluded")
    @classmethod
    def _known_cases(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        version, sut = info.data.get("ocpp_version"), info.data.get("sut")
        for cid in value if version and sut else ():
            if cid not in load(version) or load(version)[cid].sut != sut:
                raise ValueError(f"{cid!r} is not an OCPP {version} test case for SUT {sut}")
        return value


def load_declaration(path: str | Path) -> Declaration:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise DeclarationError(f"{path}: cannot read declaration: {' '.join(str(e).split())}") from None
    if not isinstance(data, dict):
        raise DeclarationError(f"{path}: a declaration is a mapping (product, ocpp_version, profiles, ...)")
    try:
        return Declaration.model_validate(data)
    except ValidationError as e:
        errors = "; ".join(
            f"{'.'.join(map(str, err['loc'])) or '(top level)'}: {err['msg'].removeprefix('Value error, ')}"
            for err in e.errors()
        )
        raise DeclarationError(f"{path}: {errors}") from None


@dataclass(frozen=True)
class Applicable:
    """A selected case: M/C, or "-" with the reason when the declaration excludes it."""

    case: TestCase
    requirement: Requirement
    profiles: tuple[str, ...]
    """The claimed profiles the case belongs to (2.0.1 cases can be in several)."""
    reason: str | None = None


def applicable(declaration: Declaration) -> list[Applicable]:
    """Cases of the claimed profiles for the declared SUT, in document order.

    2.0.1: every case flagged M or C for the SUT in a claimed certification profile (M if any claimed
    profile says M). C cases apply unless listed in ``excluded``: ``features`` is not evaluated against
    the Part 5 conditions. 1.6: every case of the SUT in the claimed profiles ("Firmware Management"
    includes its Diagnostics cases); the 1.6 catalogue has no M/C flags, so all are "M".
    Excluded cases are returned with requirement "-" and the declared reason.
    """
    version, sut = declaration.ocpp_version, declaration.sut
    cases = load(version)
    found: dict[str, tuple[str, list[str]]] = {}
    for profile in declaration.profiles:
        if version == "1.6":
            names = (profile, *_INCLUDES_16.get(profile, ()))
            hits = {c.id: "M" for c in cases.values() if c.sut == sut and c.profile in names}
        else:
            hits = {f"{base}_{sut}": flag for base in _certification()[profile]
                    if (flag := requirement(base, profile, sut)) and f"{base}_{sut}" in cases}
        for cid, flag in hits.items():
            prev, in_profiles = found.setdefault(cid, (flag, []))
            found[cid] = ("M" if "M" in (prev, flag) else "C", in_profiles + [profile])
    order = {cid: i for i, cid in enumerate(cases)}
    excluded = declaration.excluded
    return [
        Applicable(cases[cid], "-" if cid in excluded else flag, tuple(ps), excluded.get(cid))  # type: ignore[arg-type]
        for cid, (flag, ps) in sorted(found.items(), key=lambda item: order[item[0]])
    ]


_COLUMNS = ("applicable", "passed", "failed", "skipped", "not_automated", "excluded")
_COUNTED = {"applicable": (), "passed": ("passed",), "failed": ("failed", "error"), "skipped": ("skipped",),
            "not_automated": ("not automated",), "excluded": ("excluded",)}


@dataclass(frozen=True)
class PrecheckReport:
    """Outcomes against the applicable cases; ``status`` per case id is one of passed, failed, error,
    skipped, not automated, excluded; ``reasons`` holds the not-automated/excluded reasons."""

    declaration: Declaration
    cases: tuple[Applicable, ...]
    status: dict[str, str]
    reasons: dict[str, str]

    def counts(self, profile: str | None = None) -> dict[str, int]:
        """Counts for one claimed profile (None: all distinct cases); "failed" includes errors,
        "applicable" leaves out exclusions."""
        sel = [self.status[a.case.id] for a in self.cases if profile is None or profile in a.profiles]
        n = {k: sum(s in _COUNTED[k] for s in sel) for k in _COLUMNS}
        return {**n, "applicable": len(sel) - n["excluded"]}

    @property
    def mandatory_failed(self) -> list[str]:
        return [a.case.id for a in self.cases
                if a.requirement == "M" and self.status[a.case.id] in ("failed", "error")]

    @property
    def ok(self) -> bool:
        """No mandatory case failed or errored (not automated and skipped cases do not fail the check)."""
        return not self.mandatory_failed

    def to_dict(self) -> dict[str, Any]:
        d = self.declaration
        return {
            "schema": "evhil.precheck/1", "product": d.product, "ocpp_version": d.ocpp_version, "sut": d.sut,
            "ok": self.ok, "mandatory_failed": self.mandatory_failed,
            "profiles": {p: self.counts(p) for p in d.profiles}, "total": self.counts(),
            "cases": [{"id": a.case.id, "name": a.case.name, "requirement": a.requirement,
                       "profiles": list(a.profiles), "status": self.status[a.case.id],
                       "reason": self.reasons.get(a.case.id)} for a in self.cases],
        }

    def _rows(self) -> list[list[str]]:
        rows = [[p, *map(str, self.counts(p).values())] for p in self.declaration.profiles]
        return rows + [["Total (distinct)", *map(str, self.counts().values())]]

    def render(self) -> str:
        d = self.declaration
        header = ["Profile", *(c.replace("_", " ") for c in _COLUMNS)]
        rows = [header, *self._rows()]
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        lines = [f"OCPP {d.ocpp_version} pre-check: {d.product} (SUT {d.sut})"]
        lines += ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                  for r in rows]
        lines.insert(2, "-" * len(lines[1]))
        lines.append(f"Mandatory failed: {', '.join(self.mandatory_failed) or 'none'}")
        other = [a.case.id for a in self.cases
                 if a.requirement == "C" and self.status[a.case.id] in _COUNTED["failed"]]
        lines += [f"Conditional failed: {', '.join(other)}"] if other else []
        groups: dict[tuple[str, str], list[str]] = {}
        for cid, why in self.reasons.items():
            groups.setdefault((self.status[cid], why), []).append(cid)
        lines += [f"{status.capitalize()} ({why}): {', '.join(ids)}" for (status, why), ids in groups.items()]
        lines.append("RESULT: " + ("OK" if self.ok else "FAILED"))
        return "\n".join(lines)


def rich_table(report: PrecheckReport) -> Any:
    """The per-profile counts as a ``rich.table.Table``."""
    from rich.table import Table

    table = Table(title=f"OCPP {report.declaration.ocpp_version} pre-check: {report.declaration.product}")
    table.add_column("Profile")
    for column in _COLUMNS:
        table.add_column(column.replace("_", " "), justify="right")
    for row in report._rows():
        table.add_row(*row)
    return table


def precheck_report(declaration: Declaration, outcomes: dict[str, str],
                    not_automated: dict[str, str]) -> PrecheckReport:
    """Passed/failed/error outcomes count as run (even if also in ``not_automated``); a case without an
    outcome, or skipped and listed in ``not_automated``, is "not automated" with the reason."""
    bad = {cid: o for cid, o in outcomes.items() if o not in OUTCOMES}
    if bad:
        raise ValueError(f"unknown outcome(s) {bad} (expected one of {', '.join(OUTCOMES)})")
    cases = tuple(applicable(declaration))
    status: dict[str, str] = {}
    reasons: dict[str, str] = {}
    for a in cases:
        cid, outcome = a.case.id, outcomes.get(a.case.id)
        if a.requirement == "-":
            status[cid], reasons[cid] = "excluded", a.reason or ""
        elif outcome in ("passed", "failed", "error"):
            status[cid] = outcome
        elif outcome == "skipped" and cid not in not_automated:
            status[cid] = "skipped"
        else:
            status[cid], reasons[cid] = "not automated", not_automated.get(cid, "no test")
    return PrecheckReport(declaration, cases, status, reasons)
