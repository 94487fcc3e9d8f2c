"""Where the tests run hyena_lite's Triton kernels: on a CUDA GPU, or in Triton's CPU interpreter
(conftest.py sets TRITON_INTERPRET=1 on machines without CUDA); `needs_triton` skips a test module
anywhere else."""

import os

import pytest
import torch

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
DEVICE = torch.device("cpu" if INTERPRETED else "cuda")
needs_triton = pytest.mark.skipif(
    not torch.cuda.is_available() and not INTERPRETED,
    reason="the Triton kernels run on a CUDA GPU or in Triton's interpreter (TRITON_INTERPRET=1)",
)


def relative(got: torch.Tensor, want: torch.Tensor) -> float:
    """The largest error, relative to the largest value wanted."""
    return float((got - want).abs().max() / want.abs().max())
