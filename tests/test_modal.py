"""Modal fits of long filters: exact on sums of exponentials, better with order, refinable."""

from __future__ import annotations

import torch
from tiny_models import sum_of_exponentials

from hyena_lite.modal import ModalFilter, fit_modal, hankel_singular_values, relative_error


def test_taps_of_a_fit_are_its_modal_sum():
    """One real pole 0.5 with residue 2 after a head tap 3: taps 3, 2, 1, 0.5, ..."""
    fit = fit_modal(torch.tensor([[3.0, 2.0, 1.0, 0.5, 0.25, 0.125, 0.0625, 0.03125]]), order=1)
    assert isinstance(fit, ModalFilter)
    torch.testing.assert_close(
        fit.taps(6).double(),
        torch.tensor([[3.0, 2.0, 1.0, 0.5, 0.25, 0.125]], dtype=torch.float64),
        atol=1e-6,
        rtol=1e-6,
    )


def test_modal_fit_error_decreases_with_order():
    g = torch.Generator().manual_seed(1)
    t = torch.arange(512, dtype=torch.float64)
    window = torch.exp(-t / 80)
    h = (
        window * torch.cumsum(torch.randn(8, 512, generator=g, dtype=torch.float64), dim=-1) / 10
    )  # not low order
    errors = [
        relative_error(h, fit_modal(h, order, fir=2)).mean().item() for order in (2, 4, 8, 16, 32)
    ]
    assert all(a > b for a, b in zip(errors, errors[1:], strict=False)), errors
    assert errors[-1] < 0.5 * errors[0], errors


def test_hankel_singular_values_count_the_states():
    h = sum_of_exponentials(1, 200, modes=2)
    hsv = hankel_singular_values(h, size=32)[0]
    assert hsv[3] > 1e-6 * hsv[0] and hsv[4] < 1e-9 * hsv[0]  # exactly 4 real states


def test_gradient_refinement_lowers_the_fit_error():
    g = torch.Generator().manual_seed(2)
    t = torch.arange(256, dtype=torch.float64)
    h = (
        torch.exp(-t / 40)
        * torch.cumsum(torch.randn(4, 256, generator=g, dtype=torch.float64), dim=-1)
        / 10
    )
    plain = relative_error(h, fit_modal(h, 8)).mean()
    refined = relative_error(h, fit_modal(h, 8, refine_steps=50, lr=3e-3)).mean()
    assert refined < plain, (float(refined), float(plain))
