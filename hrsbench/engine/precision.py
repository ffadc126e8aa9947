"""Which devices compute bf16 natively: where mixed precision (bf16 autocast, fp32 master weights)
trains at about twice the fp32 rate, and where it would only add casts.

A CPU computes bf16 natively with AVX512-BF16 or AMX (oneDNN then runs bf16 matrix kernels); a
CUDA GPU when torch says it supports bf16. Elsewhere bf16 is emulated and slower than fp32.
"""

from __future__ import annotations

import platform
from functools import cache
from pathlib import Path

#: CPU flags (``/proc/cpuinfo``) that give oneDNN native bf16 matrix instructions.
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags, as Linux lists them (empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def resolve(precision: str, device: str = "cpu") -> str:
    """The precision a run trains in: "auto" becomes "bf16" where ``device`` computes bf16
    natively and "fp32" elsewhere; "fp32" and "bf16" are taken as asked."""
    if precision == "auto":
        return "bf16" if bf16_native(device) else "fp32"
    return precision


def bf16_native(device: str = "cpu", flags: frozenset[str] | None = None) -> bool:
    """Whether ``device`` ("cpu", "cuda", "cuda:N") computes bf16 natively; ``flags`` stands in
    for the CPU's own (for tests)."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if flags is None and platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    return bool(BF16_CPU_FLAGS & (cpu_flags() if flags is None else flags))
