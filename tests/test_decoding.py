"""An operator decoded token by token, cached and recurrent, equals its full forward."""

from __future__ import annotations

import pytest
import torch
from tiny_models import sum_of_exponentials

from hyena_lite.decoding import CachedDecoder, RecurrentDecoder
from hyena_lite.modal import fit_modal, relative_error
from hyena_lite.operator import HyenaOperator


def _decode_in_steps(decoder, u: torch.Tensor, prompt: int) -> torch.Tensor:
    return torch.cat(
        [decoder(u[:, :prompt])] + [decoder(u[:, i : i + 1]) for i in range(prompt, u.shape[1])],
        dim=1,
    )


def test_cached_decoding_past_l_max_fails_clearly():
    op = HyenaOperator(8, 16).eval()
    decoder = CachedDecoder(op)
    with torch.no_grad(), pytest.raises(ValueError, match="exceeds the filter length 16"):
        decoder(torch.randn(1, 17, 8))


def test_cached_operator_equals_full_forward():
    torch.manual_seed(0)
    op = HyenaOperator(16, 64, order=3).eval()
    u = torch.randn(2, 40, 16)
    with torch.no_grad():
        full = op(u)
    out = _decode_in_steps(CachedDecoder(op), u, prompt=7)
    torch.testing.assert_close(out, full, atol=1e-5, rtol=1e-4)


def test_recurrent_reproduces_full_forward_on_exact_exponentials():
    torch.manual_seed(0)
    op = HyenaOperator(8, 64, order=2).eval()
    h, skip = sum_of_exponentials(16, 64, modes=3), torch.randn(2, 8)
    op.long_filters = lambda length: (
        h[:, :length].float().view(2, 8, length),
        skip,
    )  # the filters used everywhere
    op.fast = False
    u = torch.randn(2, 50, 8)
    with torch.no_grad():
        full = op(u)
    fit = fit_modal(h, order=6)
    assert relative_error(h, fit).max() < 1e-6
    for prompt in (1, 20):
        out = _decode_in_steps(RecurrentDecoder(op, fit), u, prompt)
        torch.testing.assert_close(out, full, atol=1e-4, rtol=1e-3)
