"""runs.nonfinite names the tensors with a NaN or an infinity, with one fused check when none do."""

from __future__ import annotations

import pytest
import torch

from hyena_lite import runs


def tensors(**values: float) -> list[tuple[str, torch.Tensor]]:
    out = [("w", torch.randn(5, 3)), ("b", torch.randn(3).bfloat16()), ("ids", torch.arange(4))]
    for name, value in values.items():
        t = torch.randn(4, 2)
        t[1, 1] = value
        out.append((name, t))
    return out


@pytest.mark.parametrize("fallback", [False, True], ids=["get_total_norm", "torch<2.6"])
def test_nonfinite_names_exactly_the_bad_tensors(monkeypatch, fallback):
    if fallback:
        monkeypatch.delattr(torch.nn.utils, "get_total_norm", raising=False)
    assert runs.nonfinite(tensors()) == []
    assert runs.nonfinite(tensors(nan=float("nan"), ok=1.0, inf=float("-inf"))) == ["nan", "inf"]
    assert runs.nonfinite(tensors(huge=1e30)) == []  # its norm overflows; it is finite
    assert runs.nonfinite([("none", None), ("empty", torch.empty(0))]) == []


def test_nonfinite_gradients_reads_the_parameters_grads():
    model = torch.nn.Linear(3, 2)
    model(torch.randn(4, 3)).sum().backward()
    assert runs.nonfinite_gradients(model) == []
    model.bias.grad[0] = float("nan")
    assert runs.nonfinite_gradients(model) == ["bias"]
