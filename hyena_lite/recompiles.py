"""torch.compile's recompilation limits, raised once for the library's shape-specialised kernels."""

from __future__ import annotations

import torch


def allow_recompiles(limit: int = 256) -> None:
    """Let torch.compile keep one compiled version per input shape (and dtype) instead of falling
    back to eager code silently after its default of 8."""
    for name in ("recompile_limit", "cache_size_limit", "accumulated_recompile_limit"):
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, max(getattr(torch._dynamo.config, name), limit))
