"""Which INT8 scheme ONNX Runtime should use on this CPU.

On x86-64 without VNNI, ONNX Runtime's U8S8 kernels multiply with VPMADDUBSW, whose 16-bit
intermediate sums saturate when both operands use their full range: a reverse-ISP network then
loses its highlights (measured here: 28.5 dB against FP32 with full-range U8/S8, 47.5 dB with 7-bit
weights). With VNNI (AVX512-VNNI, AVX-VNNI) or AMX the dot product accumulates in 32 bits and full
range is safe; ARM64 kernels widen before accumulating, so they are safe too.
"""
from __future__ import annotations

import platform
from dataclasses import asdict, dataclass
from pathlib import Path

VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "amx_tile")


@dataclass(frozen=True)
class CpuIsa:
    """What the calibration report records about the CPU."""

    machine: str  # platform.machine(): x86_64, aarch64, arm64...
    vnni: bool  # 32-bit-accumulating INT8 dot products (x86 VNNI or AMX)
    flags: tuple[str, ...]  # the INT8-relevant flags found (subset of VNNI_FLAGS, plus avx2/avx512f)
    source: str  # where the flags came from

    @property
    def is_x86(self) -> bool:
        return self.machine.lower() in ("x86_64", "amd64", "i686", "i386", "x86")

    def to_dict(self) -> dict:
        return {**asdict(self), "flags": list(self.flags)}


def cpu_flags(cpuinfo: str) -> set[str]:
    """The union of the ``flags`` lines of a /proc/cpuinfo text."""
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return flags


def detect_isa(cpuinfo_path: str = "/proc/cpuinfo", machine: str | None = None) -> CpuIsa:
    """The CPU's INT8 capabilities (Linux: /proc/cpuinfo; elsewhere the flags are unknown and VNNI is
    assumed absent, which picks the scheme that is safe everywhere)."""
    machine = machine or platform.machine()
    try:
        flags = cpu_flags(Path(cpuinfo_path).read_text(errors="replace"))
        source = cpuinfo_path
    except OSError:
        flags, source = set(), "unknown (no /proc/cpuinfo): VNNI assumed absent"
    found = tuple(sorted(f for f in flags if f in VNNI_FLAGS or f in ("avx2", "avx512f", "asimddp", "i8mm")))
    return CpuIsa(machine=machine, vnni=any(f in flags for f in VNNI_FLAGS), flags=found, source=source)


def ort_scheme(isa: CpuIsa) -> dict:
    """ONNX Runtime quantisation settings for this CPU, with the reason (recorded in the report)."""
    if isa.is_x86 and not isa.vnni:
        return {"activation_type": "QUInt8", "weight_type": "QInt8", "reduce_range": True,
                "reason": "x86 without VNNI: U8S8 products saturate in 16 bits, so weights use 7 bits (reduce_range)"}
    if isa.is_x86:
        return {"activation_type": "QUInt8", "weight_type": "QInt8", "reduce_range": False,
                "reason": "x86 with VNNI/AMX: 32-bit accumulation, full-range U8S8"}
    return {"activation_type": "QUInt8", "weight_type": "QInt8", "reduce_range": False,
            "reason": f"{isa.machine}: INT8 kernels widen before accumulating, full-range U8S8"}
