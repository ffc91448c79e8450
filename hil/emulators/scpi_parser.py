"""A strict SCPI-1999 / IEEE 488.2 program-message parser, independent of any instrument.

Handles what real instruments accept and rejects what they reject: long and short mnemonics
(``VOLTage`` = ``VOLT``), optional nodes (``[SOURce:]``), compound messages joined by ``;`` with the
SCPI path rule (a header without a leading ``:`` continues from the previous header's node), common
commands (``*IDN?``), numeric parameters with units and magnitude prefixes (``3.5kW``, ``500 mV``),
``MINimum``/``MAXimum``/``DEFault``, booleans ``ON``/``OFF``/``1``/``0`` and quoted strings.
Errors are ``ScpiError`` with the standard codes (-1xx command errors, -2xx execution errors).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

ERROR_TEXT: dict[int, str] = {
    0: "No error",
    -100: "Command error",
    -102: "Syntax error",
    -103: "Invalid separator",
    -104: "Data type error",
    -108: "Parameter not allowed",
    -109: "Missing parameter",
    -112: "Program mnemonic too long",
    -113: "Undefined header",
    -120: "Numeric data error",
    -121: "Invalid character in number",
    -131: "Invalid suffix",
    -151: "Invalid string data",
    -200: "Execution error",
    -221: "Settings conflict",
    -222: "Data out of range",
    -224: "Illegal parameter value",
    -350: "Queue overflow",
    -400: "Query error",
    -410: "Query INTERRUPTED",
    -420: "Query UNTERMINATED",
}

MULTIPLIERS: dict[str, float] = {
    "EX": 1e18, "PE": 1e15, "T": 1e12, "G": 1e9, "MA": 1e6, "K": 1e3,
    "M": 1e-3, "U": 1e-6, "N": 1e-9, "P": 1e-12, "F": 1e-15,
}
"""SCPI suffix multipliers (case-insensitive: ``M`` is milli, ``MA`` mega)."""

_NUMBER = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*([A-Za-z]*)$")
_MNEMONIC = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_NODE = re.compile(r"([A-Z][A-Z0-9]*)([a-z]*)")


class ScpiError(Exception):
    """A SCPI error: ``code`` from the standard table, with optional detail."""

    def __init__(self, code: int, detail: str = "") -> None:
        self.code = code
        self.detail = detail
        text = ERROR_TEXT.get(code, "Error")
        super().__init__(f"{text}; {detail}" if detail else text)


@dataclass(frozen=True)
class Node:
    """One mnemonic of a header pattern: ``VOLTage`` -> short ``VOLT``, long ``VOLTAGE``."""

    short: str
    long: str

    def matches(self, mnemonic: str) -> bool:
        m = mnemonic.upper()
        return m == self.short or m == self.long


@dataclass(frozen=True)
class Pattern:
    """A header pattern such as ``[SOURce:]VOLTage[:LEVel]`` with every optional-node variant expanded."""

    text: str
    variants: tuple[tuple[Node, ...], ...]
    query_only: bool

    @classmethod
    def compile(cls, text: str) -> "Pattern":
        query_only = text.endswith("?")
        body = text.rstrip("?")
        parts: list[tuple[str, bool]] = []  # (mnemonic, optional)
        for optional, required in re.findall(r"\[:?([A-Za-z0-9]+):?\]|:?([A-Za-z0-9]+)", body):
            parts.append((optional or required, bool(optional)))
        nodes = [(_node(word), opt) for word, opt in parts]
        optional_idx = [k for k, (_, opt) in enumerate(nodes) if opt]
        variants = []
        for keep in itertools.product((True, False), repeat=len(optional_idx)):
            dropped = {k for k, kept in zip(optional_idx, keep) if not kept}
            variants.append(tuple(n for k, (n, _) in enumerate(nodes) if k not in dropped))
        return cls(text, tuple(variants), query_only)

    def match(self, mnemonics: list[str]) -> bool:
        return any(len(v) == len(mnemonics) and all(n.matches(m) for n, m in zip(v, mnemonics)) for v in self.variants)


def _node(word: str) -> Node:
    m = _NODE.fullmatch(word)
    if not m:
        raise ValueError(f"bad SCPI pattern node {word!r}: write the short form in capitals, the rest in lower case")
    return Node(m.group(1), (m.group(1) + m.group(2)).upper())


@dataclass(frozen=True)
class Command:
    """One parsed program message unit."""

    header: str
    """As received, for messages and transcripts."""
    mnemonics: tuple[str, ...]
    """Full path after applying the SCPI path rule; ``("*IDN",)`` for common commands."""
    query: bool
    params: tuple[str, ...]
    common: bool


def split_message(message: str) -> list[str]:
    """Split a program message on ``;`` outside quoted strings."""
    units, current, quote = [], [], ""
    for ch in message:
        if quote:
            current.append(ch)
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
            current.append(ch)
        elif ch == ";":
            units.append("".join(current))
            current = []
        else:
            current.append(ch)
    if quote:
        raise ScpiError(-151, "unterminated string")
    units.append("".join(current))
    return units


def split_params(text: str) -> tuple[str, ...]:
    """Split parameters on ``,`` outside quoted strings; empty parameters are syntax errors."""
    if not text.strip():
        return ()
    params, current, quote = [], [], ""
    for ch in text:
        if quote:
            current.append(ch)
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
            current.append(ch)
        elif ch == ",":
            params.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    params.append("".join(current).strip())
    if any(p == "" for p in params):
        raise ScpiError(-103, f"empty parameter in {text.strip()!r}")
    return tuple(params)


def parse_message(message: str) -> list[tuple[str, str]]:
    """Split a message into ``(header, parameter text)`` pairs without resolving headers."""
    out = []
    for unit in split_message(message):
        unit = unit.strip()
        if not unit:
            continue
        m = re.match(r"^(\S+)(?:\s+(.*))?$", unit, re.S)
        assert m is not None
        out.append((m.group(1), m.group(2) or ""))
    return out


def parse_header(header: str, path: tuple[str, ...]) -> tuple[Command, tuple[str, ...]]:
    """Resolve one header against the current path; return the command and the path for the next unit."""
    query = header.endswith("?")
    body = header[:-1] if query else header
    if body.startswith("*"):
        name = body[1:]
        if not _MNEMONIC.match(name):
            raise ScpiError(-102, f"bad common command {header!r}")
        return Command(header, ("*" + name.upper(),), query, (), True), path
    absolute = body.startswith(":")
    words = body[1:].split(":") if absolute else body.split(":")
    if any(not w for w in words):
        raise ScpiError(-102, f"empty node in {header!r}")
    for w in words:
        if not _MNEMONIC.match(w):
            raise ScpiError(-102, f"invalid character in {header!r}")
        if len(w) > 12:
            raise ScpiError(-112, w)
    full = tuple(words) if absolute else path + tuple(words)
    return Command(header, full, query, (), False), full[:-1]


def parse_number(text: str, unit: str) -> float:
    """A numeric parameter in ``unit`` (``V``, ``A``, ``W``, ``S``): ``12.5``, ``12.5V``, ``500mV``, ``3.5 kW``."""
    m = _NUMBER.match(text.strip())
    if not m:
        if re.match(r"^[+-]?[\d.]", text.strip()):
            raise ScpiError(-121, text)
        raise ScpiError(-104, f"expected a number, got {text!r}")
    value = float(m.group(1))
    suffix = m.group(2).upper()
    if not suffix:
        return value
    unit = unit.upper()
    if suffix == unit:
        return value
    if suffix.endswith(unit) and suffix[: -len(unit)] in MULTIPLIERS:
        return value * MULTIPLIERS[suffix[: -len(unit)]]
    raise ScpiError(-131, f"{m.group(2)!r} where {unit} was expected")


def parse_bool(text: str) -> bool:
    t = text.strip().upper()
    if t == "ON":
        return True
    if t == "OFF":
        return False
    try:
        return round(float(t)) != 0
    except ValueError:
        raise ScpiError(-104, f"expected ON, OFF, 1 or 0, got {text!r}") from None


def keyword(text: str) -> str | None:
    """``MIN``/``MAX``/``DEF`` (short or long form) as ``"MIN"``, ``"MAX"``, ``"DEF"``; else None."""
    t = text.strip().upper()
    for short, long in (("MIN", "MINIMUM"), ("MAX", "MAXIMUM"), ("DEF", "DEFAULT")):
        if t in (short, long):
            return short
    return None
