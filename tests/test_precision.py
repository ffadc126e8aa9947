"""Native-bf16 detection: a CPU with AVX512-BF16 or AMX computes bf16 natively, one without
emulates it; a GPU answers for itself."""

from __future__ import annotations

import platform

import pytest

from hrsbench.precision import bf16_native, cpu_flags


@pytest.mark.parametrize(("flags", "native"), [
    ({"avx2", "avx512f", "avx512_bf16"}, True),
    ({"avx2", "amx_bf16", "amx_tile"}, True),
    ({"avx2", "avx512f", "avx512_vnni"}, False),
    (set(), False),
])
def test_cpu_bf16_follows_its_flags(flags, native):
    assert bf16_native("cpu", frozenset(flags)) is native


def test_this_cpu_is_read_from_its_own_flags():
    if platform.machine().lower() not in ("x86_64", "amd64"):
        assert bf16_native("cpu") is False
    else:
        assert bf16_native("cpu") == bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def test_cuda_without_a_gpu_is_not_native():
    import torch

    if not torch.cuda.is_available():
        assert bf16_native("cuda") is False
