"""Energy-meter register maps, loaded from ``profiles/meters/<model>.yaml``.

A map is data: the register table (input or holding), the word order, the largest read the meter
accepts, the address ranges it serves, and each point's address, type and scaling (a fixed factor, or a
SunSpec scale-factor register). The driver decodes with it and the emulator encodes with it, so both
sides always agree.
"""

from __future__ import annotations

import math
import struct
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

MAP_DIR = Path(__file__).resolve().parent / "profiles" / "meters"

PointType = Literal["float32", "int32", "uint32", "int16", "uint16", "acc32", "string"]
WIDTH: dict[str, int] = {"float32": 2, "int32": 2, "uint32": 2, "acc32": 2, "int16": 1, "uint16": 1}
"""Registers per value."""
NOT_IMPLEMENTED: dict[str, int] = {"int16": 0x8000, "uint16": 0xFFFF, "acc32": 0, "float32": 0x7FC00000}
"""SunSpec "not implemented" sentinels (raw)."""
SUNS = (0x5375, 0x6E53)
"""The "SunS" marker at a SunSpec base address."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Point(_Strict):
    """One quantity: where it is, how it is stored, how to scale it. Value = raw x scale x 10^SF."""

    address: int
    type: PointType
    unit: str = ""
    scale: float = 1.0
    scale_factor: int | None = None
    """SunSpec: offset of the scale-factor register (int16 exponent of 10)."""
    count: int = 1
    """Registers of a string."""

    @property
    def width(self) -> int:
        return self.count if self.type == "string" else WIDTH[self.type]


class Identity(_Strict):
    table: Literal["input", "holding"] = "holding"
    blocks: list[tuple[int, int]] = []
    serial: Point | None = None
    model_code: Point | None = None
    manufacturer: Point | None = None
    model_name: Point | None = None


class SunSpec(_Strict):
    bases: list[int]
    model: int
    length: int
    scale_factors: dict[int, int]
    """Scale factors the emulator serves, by register offset."""


class RegisterMap(_Strict):
    """One meter family's Modbus map."""

    name: str = ""
    maker: str
    model: str
    table: Literal["input", "holding"]
    max_registers: int
    """Largest read the meter answers [registers]."""
    word_order: Literal["big", "little"]
    blocks: list[tuple[int, int]] = []
    points: dict[str, Point]
    identity: Identity = Identity()
    sunspec: SunSpec | None = None

    @property
    def function_code(self) -> int:
        return 4 if self.table == "input" else 3

    # -- register <-> value ---------------------------------------------------------------------------
    def encode(self, point: Point, value: float, exponent: int = 0) -> list[int]:
        """Registers holding ``value`` (physical units) at ``point``; ``exponent`` is the SunSpec SF."""
        if point.type == "string":
            raise TypeError("use encode_string for strings")
        if point.type == "float32":
            regs = list(struct.unpack(">HH", struct.pack(">f", value)))
        else:
            raw = round(value / point.scale / 10.0**exponent)
            if point.type in ("int16", "uint16"):
                low, high = (-0x8000, 0x7FFF) if point.type == "int16" else (0, 0xFFFF)
                return [min(max(raw, low), high) & 0xFFFF]
            if point.type == "acc32":
                raw %= 1 << 32
            low, high = (-(1 << 31), (1 << 31) - 1) if point.type == "int32" else (0, (1 << 32) - 1)
            raw = min(max(raw, low), high) & 0xFFFFFFFF
            regs = [raw >> 16, raw & 0xFFFF]
        return regs if self.word_order == "big" else regs[::-1]

    def decode(self, point: Point, regs: list[int], exponent: int = 0) -> float:
        """The physical value of ``point`` from its registers (NaN for a SunSpec "not implemented")."""
        if point.type in ("int16", "uint16"):
            raw = regs[0]
            if self.sunspec is not None and raw == NOT_IMPLEMENTED[point.type]:
                return math.nan
            if point.type == "int16" and raw >= 0x8000:
                raw -= 0x10000
            return raw * point.scale * 10.0**exponent
        high, low = (regs[0], regs[1]) if self.word_order == "big" else (regs[1], regs[0])
        raw = high << 16 | low
        if point.type == "float32":
            return struct.unpack(">f", struct.pack(">I", raw))[0] * point.scale
        if point.type == "int32" and raw >= 1 << 31:
            raw -= 1 << 32
        return raw * point.scale * 10.0**exponent


def encode_string(text: str, registers: int) -> list[int]:
    """ASCII text, two characters per register, NUL-padded."""
    data = text.encode("ascii")[: registers * 2].ljust(registers * 2, b"\0")
    return [data[k] << 8 | data[k + 1] for k in range(0, len(data), 2)]


def decode_string(regs: list[int]) -> str:
    return b"".join(bytes([r >> 8, r & 0xFF]) for r in regs).split(b"\0")[0].decode("ascii", "replace").strip()


def map_names() -> list[str]:
    return sorted(p.stem for p in MAP_DIR.glob("*.yaml"))


class MapError(ValueError):
    """A register map is missing or malformed."""


@lru_cache(maxsize=None)
def load_map(name: str) -> RegisterMap:
    """Load the map of meter model ``name`` (a file stem in ``profiles/meters``)."""
    path = MAP_DIR / f"{name}.yaml"
    if not path.is_file():
        raise MapError(f"unknown meter model {name!r}; known: {', '.join(map_names())}")
    try:
        return RegisterMap.model_validate({**yaml.safe_load(path.read_text()), "name": name})
    except (yaml.YAMLError, ValidationError) as exc:
        raise MapError(f"{path}: {exc}") from exc


def spans(points: list[Point], blocks: list[tuple[int, int]], max_registers: int) -> list[tuple[int, int]]:
    """Group points into reads ``(address, count)``: contiguous within one served block, each at most
    ``max_registers`` long, as few as possible."""
    out: list[tuple[int, int]] = []
    for p in sorted(points, key=lambda p: p.address):
        end = p.address + p.width
        if out:
            start, count = out[-1]
            same_block = not blocks or any(b0 <= start and end <= b1 for b0, b1 in blocks)
            if same_block and end - start <= max_registers:
                out[-1] = (start, max(count, end - start))
                continue
        out.append((p.address, p.width))
    return out
