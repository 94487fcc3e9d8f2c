"""Property tests of the library's entry points over random shapes, sizes and dtypes (hypothesis):
each call either returns what its docstring promises or raises ValueError / TypeError with a
message; never an IndexError, a bare RuntimeError from deep inside torch, or a silently wrong
result."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import GPT2Config, GPT2LMHeadModel

from hyena_lite.data import eval_windows, iterate_batches
from hyena_lite.fftconv import direct_conv, fftconv
from hyena_lite.models import convert
from hyena_lite.operator import HyenaOperator

FAST = settings(
    max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
DTYPES = [
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
    torch.int64,
    torch.int32,
    torch.bool,
    torch.complex64,
]
CLEAR = (ValueError, TypeError)


def refused_clearly(error: BaseException) -> bool:
    return isinstance(error, CLEAR) and len(str(error)) > 20 and "\n" not in str(error).strip()


def tensor(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    values = torch.randn(shape, dtype=torch.float64) * 3
    return values.to(dtype) if dtype != torch.bool else values > 0


@FAST
@given(
    batch=st.integers(0, 3),
    channels=st.integers(1, 4),
    length=st.integers(0, 24),
    taps=st.integers(1, 30),
    u_dtype=st.sampled_from(DTYPES),
    k_dtype=st.sampled_from(DTYPES),
    k_batched=st.booleans(),
    k_channels_off=st.sampled_from([0, 0, 0, 1]),
    with_d=st.booleans(),
)
def test_fftconv_returns_the_direct_convolution_or_refuses(
    batch, channels, length, taps, u_dtype, k_dtype, k_batched, k_channels_off, with_d
):
    u = tensor((batch, channels, length), u_dtype)
    k = tensor(((batch,) if k_batched else ()) + (channels + k_channels_off, taps), k_dtype)
    d = tensor((channels,), torch.float32) if with_d else None
    try:
        y = fftconv(u, k, d)
    except Exception as error:  # noqa: BLE001  the property: only clear refusals
        assert refused_clearly(error), f"{type(error).__name__}: {error}"
        return
    assert y.shape == u.shape and y.dtype == u.dtype
    assert u.is_floating_point() and k.is_floating_point(), (
        "integer inputs must be refused, not rounded"
    )
    if u_dtype in (torch.float32, torch.float64) and u.numel():
        reference = direct_conv(u, k, d)
        torch.testing.assert_close(
            y, reference, rtol=1e-4, atol=1e-4 * (1 + reference.abs().max().item())
        )


@FAST
@given(
    d_model=st.integers(-1, 6),
    l_max=st.integers(-1, 16),
    order=st.integers(0, 3),
    batch=st.integers(1, 2),
    length=st.integers(0, 20),
    width_off=st.sampled_from([0, 0, 1]),
    dtype=st.sampled_from(DTYPES),
    rank=st.sampled_from([3, 3, 2]),
)
def test_hyena_operator_maps_shapes_or_refuses(
    d_model, l_max, order, batch, length, width_off, dtype, rank
):
    try:
        op = HyenaOperator(d_model, l_max, order=order, filter_order=8)
    except Exception as error:  # noqa: BLE001
        assert refused_clearly(error), f"{type(error).__name__}: {error}"
        assert d_model < 1 or l_max < 1 or order < 1
        return
    u = tensor((batch, length, d_model + width_off)[3 - rank :], dtype)
    try:
        with torch.no_grad():
            y = op(u)
    except Exception as error:  # noqa: BLE001
        assert refused_clearly(error), f"{type(error).__name__}: {error}"
        return
    assert y.shape == u.shape and y.dtype == u.dtype and torch.isfinite(y).all()


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(0)
    return GPT2LMHeadModel(
        GPT2Config(vocab_size=30, n_positions=16, n_embd=8, n_layer=3, n_head=2)
    ).eval()


@FAST
@given(
    layers=st.one_of(st.none(), st.lists(st.integers(-2, 4), max_size=4)),
    init=st.sampled_from(["teacher", "fresh", "random", "zeros"]),
    l_max=st.sampled_from([None, 0, 8, 16, 32]),
    order=st.integers(0, 3),
    length=st.integers(1, 20),
)
def test_convert_builds_a_working_student_or_refuses(teacher, layers, init, l_max, order, length):
    kwargs = {"order": order} | ({} if l_max is None else {"l_max": l_max})
    try:
        student = convert(teacher, hyena_layers=layers, init=init, **kwargs)
    except Exception as error:  # noqa: BLE001
        assert refused_clearly(error), f"{type(error).__name__}: {error}"
        return
    ids = torch.randint(0, 30, (1, length))
    try:
        with torch.no_grad():
            logits = student(input_ids=ids).logits
    except Exception as error:  # noqa: BLE001
        assert refused_clearly(error), f"{type(error).__name__}: {error}"
        assert length > min(16, l_max or 16), "a length within every limit must work"
        return
    assert logits.shape == (1, length, 30) and torch.isfinite(logits).all()


@FAST
@given(
    tokens=st.integers(0, 200),
    seq_len=st.integers(-1, 40),
    batch=st.integers(-1, 5),
    max_tokens=st.one_of(st.none(), st.integers(0, 300)),
    dtype=st.sampled_from([torch.int64, torch.int32, torch.float32]),
    rank=st.sampled_from([1, 1, 2]),
)
def test_batches_and_windows_have_their_shape_or_refuse(
    tokens, seq_len, batch, max_tokens, dtype, rank
):
    ids = torch.arange(tokens).to(dtype).reshape((tokens,) if rank == 1 else (1, tokens))
    try:
        windows = eval_windows(ids, seq_len, max_tokens)
    except Exception as error:  # noqa: BLE001
        assert refused_clearly(error), f"{type(error).__name__}: {error}"
    else:
        assert windows.ndim == 2 and windows.shape[1] == seq_len and len(windows) >= 1
    try:
        first = next(iter(iterate_batches(ids, batch, seq_len, seed=0)))
    except Exception as error:  # noqa: BLE001
        assert refused_clearly(error), f"{type(error).__name__}: {error}"
    else:
        assert first.shape == (batch, seq_len)
