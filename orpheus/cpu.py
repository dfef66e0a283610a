"""The CPU at hand, from /proc/cpuinfo: its model name, the instruction sets the fast paths choose by, and the
one-line description every benchmark prints beside its figures. TensorFlow-free."""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

BF16_FLAGS = ("avx512_bf16", "amx_bf16")               # native bf16 arithmetic
INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")   # int8 dot products
RELEVANT_FLAGS = frozenset({*BF16_FLAGS, *INT8_FLAGS, "avx512f", "avx2", "amx_tile"})
EXTENSION_NAMES = (("avx512f", "AVX-512"), ("avx512_bf16", "AVX512-BF16"), ("avx512_vnni", "VNNI"), ("amx_tile", "AMX"))


@functools.cache
def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none)."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def cpu_name() -> str:
    """The CPU's model name ("AMD EPYC 9R14 96-Core Processor"), or the platform's guess."""
    return _cpuinfo().get("model name") or platform.processor() or "unknown CPU"


def cpu_flags() -> list[str]:
    """The CPU's flags that Orpheus chooses a path by (AVX-512, bf16, int8 dot products, AMX), sorted."""
    return sorted(set(_cpuinfo().get("flags", "").split()) & RELEVANT_FLAGS)


def has_bf16() -> bool:
    """Whether the CPU has bf16 arithmetic instructions (AVX512-BF16 or AMX)."""
    return any(flag in cpu_flags() for flag in BF16_FLAGS)


def describe() -> str:
    """One line for a benchmark report: model name, family/model numbers, the extensions, the logical CPUs."""
    fields, flags = _cpuinfo(), cpu_flags()
    extensions = [name for flag, name in EXTENSION_NAMES if flag in flags] or (["AVX2"] if "avx2" in flags else [])
    return (f"{cpu_name()} (family {fields.get('cpu family', '?')} model {fields.get('model', '?')}; "
            f"{' + '.join(extensions) or 'no AVX'}), {os.cpu_count()} logical CPUs")
