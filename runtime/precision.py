"""The float type seal's models compute in. By default bf16 where the hardware has it (a student's
autocast, the teacher's weights): half the memory and faster; fp32 where bf16 would be emulated. bf16
results change in their last bits with the kernel (AVX512-BF16, AMX, a GPU) and the thread count
(runtime/cores.py), so `SEAL_PRECISION=fp32` computes in fp32 everywhere instead: slower on such hardware,
but the same numbers on any CPU to within rounding, which the golden-numbers test
(tests/orchestrator/test_golden.py) relies on."""

from __future__ import annotations

import os

VARIABLE = "SEAL_PRECISION"


def bf16_wanted(supported: bool) -> bool:
    """Compute in bf16: where the device supports it, unless SEAL_PRECISION=fp32."""
    value = os.environ.get(VARIABLE, "auto")
    if value not in ("auto", "fp32"):
        raise ValueError(f"{VARIABLE}={value!r}: give auto or fp32, or unset it")
    return supported and value == "auto"


def bf16_native(on_cpu: bool) -> bool:
    """bf16 has hardware behind it: a GPU that supports it, or a CPU with AVX512-BF16 or AMX (oneDNN's
    own check, what autocast on a CPU runs on). Elsewhere bf16 is emulated: on an AVX2-only AMD EPYC its
    matmuls at decoding shapes ran at 17–18 GFLOP/s against fp32's 62–70, and the teacher sampled 2.7×
    slower in bf16 than in fp32 (benchmarks/generation.py)."""
    import torch  # this module's check of SEAL_PRECISION runs at every command's start, before torch is needed

    if not on_cpu:
        return torch.cuda.is_bf16_supported()
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
