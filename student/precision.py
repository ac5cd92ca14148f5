"""The float type seal's models compute in. By default bf16 where the device supports it (a student's
autocast, the teacher's weights): half the memory and faster. Its results change in their last bits with
the kernel (AVX512-BF16, AMX, a GPU) and the thread count (student/cores.py), so `SEAL_PRECISION=fp32`
computes in fp32 everywhere instead: slower, but the same numbers on any CPU to within rounding, which
the golden-numbers test (tests/orchestrator/test_golden.py) relies on."""

from __future__ import annotations

import os

VARIABLE = "SEAL_PRECISION"


def bf16_wanted(supported: bool) -> bool:
    """Compute in bf16: where the device supports it, unless SEAL_PRECISION=fp32."""
    value = os.environ.get(VARIABLE, "auto")
    if value not in ("auto", "fp32"):
        raise ValueError(f"{VARIABLE}={value!r}: give auto or fp32, or unset it")
    return supported and value == "auto"
