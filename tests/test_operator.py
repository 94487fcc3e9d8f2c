"""The implicit filter and the Hyena operator: shapes, causality, the matrix form, precision,
gradients, errors."""

import copy

import pytest
import torch

from hyena_lite import HyenaFilter, HyenaOperator


def _operator(
    order: int = 2, d_model: int = 8, l_max: int = 64, seed: int = 0, **kwargs
) -> HyenaOperator:
    torch.manual_seed(seed)
    return HyenaOperator(d_model, l_max, order=order, filter_order=16, **kwargs)


def _toeplitz(h: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    """S_h with entries S[t, s] = h[t - s] for s <= t, zero above the diagonal, plus the skip on the
    diagonal."""
    length = h.shape[0]
    matrix = torch.zeros(length, length)
    for t in range(length):
        for s in range(t + 1):
            matrix[t, s] = h[t - s]
    return matrix + skip * torch.eye(length)


@pytest.mark.parametrize("length", [1, 5, 64])
@pytest.mark.parametrize("batch", [1, 3])
def test_shapes(length: int, batch: int) -> None:
    op = _operator()
    y = op(torch.randn(batch, length, 8))
    assert y.shape == (batch, length, 8) and y.dtype == torch.float32
    gates, v = op.gates_and_value(torch.randn(batch, length, 8))
    assert (
        len(gates) == 2
        and all(x.shape == (batch, 8, length) for x in gates)
        and v.shape == (batch, 8, length)
    )
    k, bias = op.long_filters(length)
    assert (
        k.shape == (2, 8, length)
        and bias.shape == (2, 8)
        and k.dtype == bias.dtype == torch.float32
    )


@pytest.mark.parametrize("order", [1, 2, 3])
def test_recurrence_equals_explicit_matrix_form(order: int) -> None:
    """y = D_x^N S_h^N ... D_x^1 S_h^1 v per channel, then the out-projection (Poli et al. 2023, eq.
    3)."""
    op = _operator(order=order, d_model=4, l_max=16, seed=order)
    length = 6
    u = torch.randn(2, length, 4)
    with torch.no_grad():
        gates, v = op.gates_and_value(u)
        k, bias = op.long_filters(length)
        mixed = torch.empty_like(v)
        for b in range(2):
            for c in range(4):
                y = v[b, c]
                for n in range(order):
                    y = torch.diag(gates[n][b, c]) @ _toeplitz(k[n, c], bias[n, c]) @ y
                mixed[b, c] = y
        want = op.out_proj(mixed.transpose(1, 2))
        got = op(u)
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-4), (got - want).abs().max()


def test_gates_and_value_follow_the_in_projection_layout() -> None:
    """in_proj's output channels are [x^1, ..., x^N, v]: check with a short filter that is the
    identity."""
    op = _operator(order=2, d_model=4)
    with torch.no_grad():
        op.short_filter.weight.zero_()
        op.short_filter.weight[..., -1] = (
            1.0  # the tap on the current step (left padding: last tap)
        )
        op.short_filter.bias.zero_()
        u = torch.randn(1, 7, 4)
        projected = op.in_proj(u).transpose(1, 2)
        gates, v = op.gates_and_value(u)
    assert torch.allclose(gates[0], projected[:, 0:4]) and torch.allclose(
        gates[1], projected[:, 4:8]
    )
    assert torch.allclose(v, projected[:, 8:12])


@pytest.mark.parametrize("t0", [0, 17, 47])
def test_operator_is_causal(t0: int) -> None:
    op = _operator(order=3, l_max=48)
    u = torch.randn(2, 48, 8)
    changed = u.clone()
    changed[:, t0] += 10.0
    with torch.no_grad():
        before, after = op(u), op(changed)
    assert torch.allclose(before[:, :t0], after[:, :t0], atol=1e-5)
    assert (before[:, t0] - after[:, t0]).abs().max() > 1e-2  # the change does reach step t0


def test_filter_of_length_L_is_a_prefix_of_the_longest_filter() -> None:
    torch.manual_seed(0)
    filt = HyenaFilter(6, l_max=100, emb_dim=5, filter_order=8)
    full = filt(100)
    assert full.shape == (6, 100) and full.dtype == torch.float32 and filt.bias.shape == (6,)
    assert torch.allclose(filt(37), full[:, :37], atol=1e-6)


def test_decay_windows_are_spread_across_channels() -> None:
    filt = HyenaFilter(5, l_max=1000, fast_decay_pct=0.3, slow_decay_pct=1.5, target=1e-2)
    window = filt.window(1000)
    assert torch.allclose(window[:, 0], torch.ones(5))
    assert (window[:-1, -1] > window[1:, -1]).all()  # channel 0 decays slowest, the last fastest
    # the fastest channel falls to `target` at 30% of l_max, the slowest at 150%
    fastest_at = int((window[-1] > 1e-2).sum())
    assert abs(fastest_at - 0.3 * 999) <= 2
    assert torch.isclose(window[0, -1], torch.tensor(1e-2) ** (1 / 1.5), rtol=1e-3)


@pytest.mark.parametrize(
    ("dtype", "scale"), [(torch.bfloat16, 1e3), (torch.float16, 1.0), (torch.float16, 10.0)]
)
def test_half_precision_modules_at_long_length(dtype: torch.dtype, scale: float) -> None:
    """Inputs up to 1e3 in bf16; fp16 up to 10, where the float32 output (~2e4) still fits fp16's
    range of 65504.

    At larger fp16 inputs the float32 result itself exceeds 65504, so no fp16 output could be close
    to it.
    """
    length = 8192
    op32 = _operator(order=2, d_model=8, l_max=length)
    op_half = copy.deepcopy(op32).to(dtype)
    u = (scale * torch.rand(1, length, 8, generator=torch.Generator().manual_seed(0))).to(dtype)
    with torch.no_grad():
        got = op_half(u)
        want = op32(u.float())
    assert got.dtype == dtype and torch.isfinite(got).all()
    error = ((got.float() - want).abs().max() / want.abs().max()).item()
    assert error <= 5e-2, f"relative error {error:.3g} of {dtype} against float32"


def test_gradients_reach_every_parameter() -> None:
    op = _operator(order=2, d_model=4, l_max=32)
    op(torch.randn(2, 32, 4)).square().mean().backward()
    names = {name for name, _ in op.named_parameters()}
    assert {
        "filter_fn.decay_rates",
        "filter_fn.bias",
        "short_filter.weight",
        "in_proj.weight",
        "out_proj.bias",
    } <= names
    for name, parameter in op.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, (
            f"no gradient reaches {name}"
        )


def test_long_filters_under_no_grad_are_plain_tensors() -> None:
    op = _operator()
    with torch.no_grad():
        k, bias = op.long_filters(16)
    assert not k.requires_grad and not bias.requires_grad
    k, bias = op.long_filters(16)
    assert k.requires_grad and bias.requires_grad


def test_dropout_acts_in_training_only() -> None:
    op = _operator(dropout=0.5)
    u = torch.randn(2, 16, 8)
    with torch.no_grad():
        assert not torch.allclose(op(u), op(u))
        op.eval()
        assert torch.equal(op(u), op(u))


def test_operator_errors_say_what_was_expected() -> None:
    op = _operator(d_model=8, l_max=2048)
    with pytest.raises(
        ValueError, match=r"expected input of shape \[batch, length, 8\], got rank 2"
    ):
        op(torch.randn(16, 8))
    with pytest.raises(
        ValueError, match=r"expected input width d_model=8 in the last dimension, got 5"
    ):
        op(torch.randn(1, 16, 5))
    message = (
        r"sequence length 4096 exceeds the filter length 2048 of this operator; "
        r"build it \(or convert the student\) with l_max >= 4096"
    )
    with pytest.raises(ValueError, match=message):
        op(torch.randn(1, 4096, 8))
    with pytest.raises(ValueError, match=r"empty sequence"):
        op(torch.randn(1, 0, 8))
    with pytest.raises(ValueError, match="order must be at least 1, got 0"):
        HyenaOperator(8, 16, order=0)


def test_filter_errors_say_what_was_expected() -> None:
    filt = HyenaFilter(4, l_max=100)
    with pytest.raises(
        ValueError, match=r"sequence length 101 exceeds the filter length 100 .* l_max >= 101"
    ):
        filt(101)
    for emb_dim in (1, 4):
        with pytest.raises(ValueError, match=f"emb_dim must be odd and >= 3.*got {emb_dim}"):
            HyenaFilter(4, l_max=100, emb_dim=emb_dim)


def test_decay_within_moves_the_windows_inside_the_context():
    from hyena_lite.operator import decay_within

    within = decay_within(128, 1024)
    assert within == pytest.approx({"fast_decay_pct": 0.3 / 8, "slow_decay_pct": 1.5 / 8})
    moved = HyenaFilter(8, emb_dim=33, l_max=1024, **within)
    library = HyenaFilter(8, emb_dim=33, l_max=1024)
    assert moved(1024).shape == (8, 1024)  # the filters keep their length
    # each channel decays 8 times faster: at step s where the library's window is at step 8s
    torch.testing.assert_close(moved.window(1024)[:, :128], library.window(1024)[:, ::8])
    with pytest.raises(ValueError, match="decay context must be in"):
        decay_within(2048, 1024)
