"""Probe (issue 16): the causal long convolution as one Triton program per channel, its FFT computed
by matrix products, FlashFFTConv-style (Fu et al., 2023), against the FFT convolution the library
runs (`hyena_lite.fftconv.fftconv`: cuFFT's rfft and irfft with a complex product between).

Not the library's path: an experiment whose timing decides whether it becomes one. The profile of
the training step at 16K (`profile_training_h100.json`) spends a quarter of its GPU work in ten
FFTs and a sixth in the copies and scaling passes torch adds around each inverse FFT; a convolution
that keeps a channel's signal on chip from the forward FFT to the inverse one reads the signal
once and writes it once.

The FFT of size n = n1 n2 (powers of two, the four-step algorithm): the zero-padded signal x as
[n1, n2] (x[a n2 + b]); A = F1 x (only the first n1 / 2 rows of x are not padding), A *= T (the
twiddles W_n^(b k1)), C = A F2, so that C[k1, k2] = X[k1 + n1 k2]; the filter's spectrum is kept in
that permuted layout. The inverse: A' = (C K) conj(F2), A' *= conj(T), y = conj(F1)[: n1 / 2] A' / n
(the first L = n / 2 outputs). Twelve real matrix products a channel, as `tl.dot`; "ieee" float32
for exactness (and Triton's CPU interpreter), "tf32" for tensor cores.

The two-stage kernel's DFT matrices and tiles grow with sqrt(n); the three-stage kernel (from
n = 8192: n = 32 n2 n3, n2, n3 >= 16) splits the inner FFT of size m = n2 n3 again, so that its
matrices stay 16 to 32 wide: the middle axis of the [32, n2, n3] tile is moved last, multiplied,
and moved back (`_middle`); twenty real matrix products a channel. Warps per program as the H100
measured them (`default_warps`).

Timed on an H100 (monarch_h100.json; both sides as CUDA graphs, the baseline also compiled):
2.0x the cuFFT convolution at 1K (two stages), 1.5x at 2K and 4K (three stages at 4K), 1.14x
slower at 8K; from 16K no kernel builds (one program cannot hold a channel of 32K points).

    python scripts/monarch_fftconv_probe.py --out results.json --lengths 1024,4096,8192,16384
    TRITON_INTERPRET=1 python scripts/monarch_fftconv_probe.py --check   # exactness, on a CPU
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
from collections.abc import Iterator

import torch
import triton
import triton.language as tl

from hyena_lite import runs
from hyena_lite.cudagraph import record
from hyena_lite.fftconv import fftconv
from hyena_lite.provenance import provenance
from hyena_lite.timing import time_call

MIN_FFT = 2048  # n1 = 32 at least: tl.dot needs 16 rows in the padded half
MIN_FFT3 = 8192  # the three-stage kernel: 32 x 16 x 16


@triton.jit
def _dot(a, b, PRECISION: tl.constexpr):
    return tl.dot(a, b, input_precision=PRECISION)


@triton.jit
def _cdot(ar, ai, br, bi, PRECISION: tl.constexpr):
    """The complex matrix product (ar + i ai) @ (br + i bi), as four real ones."""
    real = _dot(ar, br, PRECISION) - _dot(ai, bi, PRECISION)
    return real, _dot(ar, bi, PRECISION) + _dot(ai, br, PRECISION)


@triton.jit
def _first_stage(
    u_ptr, row, length, f1r_ptr, f1i_ptr, N1: tl.constexpr, W: tl.constexpr, PRECISION: tl.constexpr
):
    """The row's zero-padded signal as [N1 / 2, W] (x[a W + j]; the other N1 / 2 rows are padding)
    and F1 times it, [N1, W] complex: only F1's first N1 / 2 columns meet signal."""
    HALF: tl.constexpr = N1 // 2
    a = tl.arange(0, HALF)
    signal = a[:, None] * W + tl.arange(0, W)[None, :]
    x = tl.load(u_ptr + row * length + signal, mask=signal < length, other=0.0)
    f1_half = tl.arange(0, N1)[:, None] * N1 + a[None, :]
    ar = _dot(tl.load(f1r_ptr + f1_half), x, PRECISION)
    return x, ar, _dot(tl.load(f1i_ptr + f1_half), x, PRECISION)


@triton.jit
def _last_stage(
    y_ptr,
    row,
    length,
    gr,
    gi,
    x,
    skip,
    f1r_ptr,
    f1i_ptr,
    inv_n,
    N1: tl.constexpr,
    W: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """y = Re(conj(F1)[:N1 / 2] G) / n + D x, stored: the inverse's last stage, only the first
    L = n / 2 outputs."""
    HALF: tl.constexpr = N1 // 2
    a = tl.arange(0, HALF)
    f1_rows = a[:, None] * N1 + tl.arange(0, N1)[None, :]
    y = _dot(tl.load(f1r_ptr + f1_rows), gr, PRECISION)
    y += _dot(tl.load(f1i_ptr + f1_rows), gi, PRECISION)
    signal = a[:, None] * W + tl.arange(0, W)[None, :]
    tl.store(y_ptr + row * length + signal, y * inv_n + skip * x, mask=signal < length)


@triton.jit
def _conv_kernel(
    u_ptr,  # [rows, length]: the signals, row = batch * channels + channel
    y_ptr,  # [rows, length]
    skip_ptr,  # [channels]
    kr_ptr,  # [channels, N1, N2]: the filters' spectra, permuted
    ki_ptr,
    f1r_ptr,  # [N1, N1]
    f1i_ptr,
    f2r_ptr,  # [N2, N2]
    f2i_ptr,
    tr_ptr,  # [N1, N2]
    ti_ptr,
    length,
    channels,
    inv_n,
    N1: tl.constexpr,
    N2: tl.constexpr,
    PRECISION: tl.constexpr,
):
    row = tl.program_id(0)
    channel = row % channels
    x, ar, ai = _first_stage(u_ptr, row, length, f1r_ptr, f1i_ptr, N1, N2, PRECISION)
    k1 = tl.arange(0, N1)
    b = tl.arange(0, N2)
    grid = k1[:, None] * N2 + b[None, :]
    tr = tl.load(tr_ptr + grid)
    ti = tl.load(ti_ptr + grid)
    ar, ai = ar * tr - ai * ti, ar * ti + ai * tr
    square = b[:, None] * N2 + b[None, :]
    f2r = tl.load(f2r_ptr + square)
    f2i = tl.load(f2i_ptr + square)
    cr, ci = _cdot(ar, ai, f2r, f2i, PRECISION)
    kr = tl.load(kr_ptr + channel * N1 * N2 + grid)
    ki = tl.load(ki_ptr + channel * N1 * N2 + grid)
    cr, ci = cr * kr - ci * ki, cr * ki + ci * kr
    ar, ai = _cdot(cr, ci, f2r, -f2i, PRECISION)  # C conj(F2)
    ar, ai = ar * tr + ai * ti, ai * tr - ar * ti  # conj(T)
    skip = tl.load(skip_ptr + channel)
    _last_stage(y_ptr, row, length, ar, ai, x, skip, f1r_ptr, f1i_ptr, inv_n, N1, N2, PRECISION)


@triton.jit
def _middle(
    ar, ai, fr, fi, N1: tl.constexpr, N2: tl.constexpr, N3: tl.constexpr, PRECISION: tl.constexpr
):
    """A [N1, N2 N3] read as [N1, N2, N3], its middle axis multiplied by the symmetric matrix F:
    the axis moved last, one matrix product, moved back."""
    pr = tl.reshape(tl.permute(tl.reshape(ar, (N1, N2, N3)), (0, 2, 1)), (N1 * N3, N2))
    pi = tl.reshape(tl.permute(tl.reshape(ai, (N1, N2, N3)), (0, 2, 1)), (N1 * N3, N2))
    qr, qi = _cdot(pr, pi, fr, fi, PRECISION)
    qr = tl.reshape(tl.permute(tl.reshape(qr, (N1, N3, N2)), (0, 2, 1)), (N1, N2 * N3))
    qi = tl.reshape(tl.permute(tl.reshape(qi, (N1, N3, N2)), (0, 2, 1)), (N1, N2 * N3))
    return qr, qi


@triton.jit
def _conv3_kernel(
    u_ptr,  # [rows, length]
    y_ptr,
    skip_ptr,
    kr_ptr,  # [channels, N1 N2, N3]: the filters' spectra, permuted
    ki_ptr,
    f1r_ptr,  # [N1, N1]
    f1i_ptr,
    f2r_ptr,  # [N2, N2]
    f2i_ptr,
    f3r_ptr,  # [N3, N3]
    f3i_ptr,
    t1r_ptr,  # [N1, N2 N3]: W_n^(k1 j)
    t1i_ptr,
    t2r_ptr,  # [N2 N3]: W_m^(k2 c), m = N2 N3
    t2i_ptr,
    length,
    channels,
    inv_n,
    N1: tl.constexpr,
    N2: tl.constexpr,
    N3: tl.constexpr,
    PRECISION: tl.constexpr,
):
    row = tl.program_id(0)
    channel = row % channels
    M: tl.constexpr = N2 * N3
    x, ar, ai = _first_stage(u_ptr, row, length, f1r_ptr, f1i_ptr, N1, M, PRECISION)
    k1 = tl.arange(0, N1)
    j = tl.arange(0, M)
    wide = k1[:, None] * M + j[None, :]
    t1r = tl.load(t1r_ptr + wide)
    t1i = tl.load(t1i_ptr + wide)
    ar, ai = ar * t1r - ai * t1i, ar * t1i + ai * t1r
    b = tl.arange(0, N2)
    f2r = tl.load(f2r_ptr + b[:, None] * N2 + b[None, :])
    f2i = tl.load(f2i_ptr + b[:, None] * N2 + b[None, :])
    ar, ai = _middle(ar, ai, f2r, f2i, N1, N2, N3, PRECISION)
    t2r = tl.load(t2r_ptr + j)[None, :]  # the same for every k1
    t2i = tl.load(t2i_ptr + j)[None, :]
    ar, ai = ar * t2r - ai * t2i, ar * t2i + ai * t2r
    c = tl.arange(0, N3)
    f3r = tl.load(f3r_ptr + c[:, None] * N3 + c[None, :])
    f3i = tl.load(f3i_ptr + c[:, None] * N3 + c[None, :])
    er, ei = _cdot(
        tl.reshape(ar, (N1 * N2, N3)), tl.reshape(ai, (N1 * N2, N3)), f3r, f3i, PRECISION
    )
    spectrum = channel * N1 * M + tl.arange(0, N1 * N2)[:, None] * N3 + c[None, :]
    kr = tl.load(kr_ptr + spectrum)
    ki = tl.load(ki_ptr + spectrum)
    er, ei = er * kr - ei * ki, er * ki + ei * kr
    # the inverse: the same steps backwards with conjugate matrices and twiddles
    gr, gi = _cdot(er, ei, f3r, -f3i, PRECISION)
    gr, gi = tl.reshape(gr, (N1, M)), tl.reshape(gi, (N1, M))
    gr, gi = gr * t2r + gi * t2i, gi * t2r - gr * t2i
    gr, gi = _middle(gr, gi, f2r, -f2i, N1, N2, N3, PRECISION)
    gr, gi = gr * t1r + gi * t1i, gi * t1r - gr * t1i
    skip = tl.load(skip_ptr + channel)
    _last_stage(y_ptr, row, length, gr, gi, x, skip, f1r_ptr, f1i_ptr, inv_n, N1, M, PRECISION)


def fft_factors(n: int) -> tuple[int, int]:
    """n = n1 n2, both powers of two, n1 <= n2 and n1 >= 32."""
    if n < MIN_FFT or n & (n - 1):
        raise ValueError(f"the FFT size must be a power of two >= {MIN_FFT}, got {n}")
    n1 = max(2 ** (int(math.log2(n)) // 2), 32)
    return n1, n // n1


def _dft(n: int) -> torch.Tensor:
    idx = torch.arange(n, dtype=torch.float64)
    return torch.exp(-2j * math.pi * torch.outer(idx, idx) / n)


def _pair(z: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    return z.real.float().contiguous().to(device), z.imag.float().contiguous().to(device)


def make_plan(k: torch.Tensor, length: int) -> dict:
    """The constants of the convolution with filters k [C, Lk] over signals of `length` steps: the
    DFT matrices, the twiddles and each filter's spectrum, permuted to [C, n1, n2]."""
    n = max(2 ** math.ceil(math.log2(2 * length)), MIN_FFT)
    n1, n2 = fft_factors(n)
    rows = torch.arange(n1, dtype=torch.float64)[:, None]
    cols = torch.arange(n2, dtype=torch.float64)[None, :]
    spectrum = torch.fft.fft(k.double()[:, :length], n=n)  # index k1 + n1 k2
    permuted = spectrum.reshape(k.shape[0], n2, n1).transpose(1, 2)
    device = k.device
    return {
        "n": n,
        "n1": n1,
        "n2": n2,
        "f1": _pair(_dft(n1), device),
        "f2": _pair(_dft(n2), device),
        "t": _pair(torch.exp(-2j * math.pi * rows * cols / n), device),
        "k": _pair(permuted, device),
    }


def default_warps(n1: int, n2: int, stages: int = 2) -> int:
    """Warps a program for a tile of n1 x n2 elements, as the H100 sweep measured them
    (monarch_h100.json): 4 for two-stage tiles up to 64 x 128 (at 4K: 0.37 ms against 0.52 with
    8), 8 otherwise (8K, two stages: 0.53 ms against 1.47 with 4 and 2.62 with 16; three stages,
    4K: 0.093 against 0.136 with 4; 8K: 0.32 against 1.19 with 4 and 0.36 with 16)."""
    return 4 if stages == 2 and n1 * n2 <= 8192 else 8


def _launch(
    kernel,
    u: torch.Tensor,
    plan: dict,
    skip: torch.Tensor,
    tables: list[str],
    sizes: dict,
    precision: str,
    num_warps: int | None,
) -> torch.Tensor:
    """Run a convolution kernel, one program per row of u [B, C, L]: the plan's `tables` (pairs
    of real and imaginary parts) in order, its split as the kernel's `sizes` (N1 first)."""
    batch, channels, length = u.shape
    rows = u.reshape(batch * channels, length)
    out = torch.empty_like(rows)
    n1, *rest = sizes.values()
    kernel[(batch * channels,)](
        rows,
        out,
        skip.float().contiguous(),
        *(part for name in tables for part in plan[name]),
        length,
        channels,
        1.0 / plan["n"],
        **sizes,
        PRECISION=precision,
        num_warps=num_warps or default_warps(n1, math.prod(rest), 1 + len(rest)),
    )
    return out.reshape(batch, channels, length)


def causal_conv(
    u: torch.Tensor,
    plan: dict,
    skip: torch.Tensor,
    precision: str = "ieee",
    num_warps: int | None = None,
) -> torch.Tensor:
    """y = (k * u)[:L] + D u for float32 u [B, C, L], with `make_plan(k, L)` and skip D [C];
    `num_warps` per program (default: `default_warps`)."""
    sizes = {"N1": plan["n1"], "N2": plan["n2"]}
    tables = ["k", "f1", "f2", "t"]
    return _launch(_conv_kernel, u, plan, skip, tables, sizes, precision, num_warps)


def fft_factors3(n: int) -> tuple[int, int, int]:
    """n = n1 n2 n3 for the three-stage kernel: n1 = 32 (16 rows of signal in its padded half),
    n2 <= n3, both at least 16 (`tl.dot`'s smallest side)."""
    if n < MIN_FFT3 or n & (n - 1):
        raise ValueError(f"the three-stage FFT size must be a power of two >= {MIN_FFT3}, got {n}")
    m = n // 32
    n2 = max(16, 2 ** (int(math.log2(m)) // 2))
    return 32, n2, m // n2


def make_plan3(k: torch.Tensor, length: int) -> dict:
    """`make_plan` for the three-stage kernel: F1, F2, F3, the twiddles of both levels and each
    filter's spectrum permuted to [C, n1 n2, n3] (entry (k1 + n1 k2, k3) is X[k1 + n1 k2 + n1 n2
    k3])."""
    n = max(2 ** math.ceil(math.log2(2 * length)), MIN_FFT3)
    n1, n2, n3 = fft_factors3(n)
    m = n2 * n3
    spectrum = torch.fft.fft(k.double()[:, :length], n=n)
    channels = k.shape[0]
    permuted = spectrum.reshape(channels, n3, n2, n1).permute(0, 3, 2, 1)
    rows, cols = torch.arange(n1, dtype=torch.float64), torch.arange(m, dtype=torch.float64)
    k2, c = torch.arange(n2, dtype=torch.float64), torch.arange(n3, dtype=torch.float64)
    device = k.device
    return {
        "n": n,
        "n1": n1,
        "n2": n2,
        "n3": n3,
        "f1": _pair(_dft(n1), device),
        "f2": _pair(_dft(n2), device),
        "f3": _pair(_dft(n3), device),
        "t1": _pair(torch.exp(-2j * math.pi * torch.outer(rows, cols) / n), device),
        "t2": _pair(torch.exp(-2j * math.pi * torch.outer(k2, c) / m).reshape(-1), device),
        "k": _pair(permuted.reshape(channels, n1 * n2, n3), device),
    }


def causal_conv3(
    u: torch.Tensor,
    plan: dict,
    skip: torch.Tensor,
    precision: str = "ieee",
    num_warps: int | None = None,
) -> torch.Tensor:
    """`causal_conv` by the three-stage kernel, with `make_plan3(k, L)`."""
    sizes = {"N1": plan["n1"], "N2": plan["n2"], "N3": plan["n3"]}
    tables = ["k", "f1", "f2", "f3", "t1", "t2"]
    return _launch(_conv3_kernel, u, plan, skip, tables, sizes, precision, num_warps)


def check(lengths: list[int], stages: int = 2) -> float:
    """Largest error of the two- or three-stage kernel (ieee) against `fftconv`, relative to the
    output's largest value, over small random problems."""
    plan_fn, conv = (make_plan, causal_conv) if stages == 2 else (make_plan3, causal_conv3)
    torch.manual_seed(0)
    worst = 0.0
    for length in lengths:
        u, k, skip = torch.randn(1, 2, length), torch.randn(2, length) / length**0.5, torch.randn(2)
        got, want = conv(u, plan_fn(k, length), skip), fftconv(u, k, skip)
        worst = max(worst, float((got - want).abs().max() / want.abs().max()))
    return worst


def cufft_conv(u: torch.Tensor, spectrum: torch.Tensor, skip: torch.Tensor, n: int) -> torch.Tensor:
    """The library's convolution with the filter spectrum given (as its inference path caches it):
    rfft, complex product, irfft, the first L steps plus D u."""
    y = torch.fft.irfft(torch.fft.rfft(u, n=n) * spectrum, n=n)[..., : u.shape[-1]]
    return y + skip[:, None] * u


def _timed(name: str, conv, u, plan, skip, want, precision, num_warps) -> dict:
    """One kernel's row entries: its split, warps, error against `fftconv` and time, or the error
    that stopped it (too large a tile for the chip, say)."""
    factors = [plan[key] for key in ("n1", "n2", "n3") if key in plan]
    warps = num_warps or default_warps(factors[0], math.prod(factors[1:]), len(factors))
    entry = {f"{name}_split": " x ".join(map(str, factors)), f"{name}_num_warps": warps}
    try:
        got = conv(u, plan, skip, precision, num_warps)
    except Exception as error:  # noqa: BLE001  recorded, the other kernel still runs
        return {**entry, f"{name}_error": repr(error)}
    entry[f"{name}_rel_err"] = float((got - want).abs().max() / want.abs().max())
    timing = time_call(lambda: conv(u, plan, skip, precision, num_warps))
    graph, _ = record(lambda: conv(u, plan, skip, precision, num_warps), u.device)
    return {**entry, **timing.as_row(name), **time_call(graph.replay).as_row(f"{name}_graph")}


def bench(
    lengths: list[int], width: int, precision: str, num_warps: int | None = None
) -> Iterator[dict]:
    """Per length, batch 1, `width` channels, float32: the two-stage kernel and (from n = 8192)
    the three-stage one against `cufft_conv`, eager and compiled by torch.compile (inductor fuses
    the padding, slice and skip around cuFFT's calls) and replayed as a CUDA graph (no launch
    cost: the baseline at its best; the kernels are graphed too), all with the filter's spectrum
    computed beforehand (median and IQR of time_call), and each kernel's error against
    `fftconv`; one row a length, as it finishes."""
    compiled = torch.compile(cufft_conv, dynamic=False)
    for length in lengths:
        u = torch.randn(1, width, length, device="cuda")
        k = torch.randn(width, length, device="cuda") / length**0.5
        skip = torch.randn(width, device="cuda")
        want = fftconv(u, k, skip)
        plan = make_plan(k, length)
        spectrum = torch.fft.rfft(k, n=plan["n"])
        row = {"L": length, "n": plan["n"]}
        for name, conv in (("cufft", cufft_conv), ("cufft_compiled", compiled)):
            args = (u, spectrum, skip, plan["n"])
            timing = time_call(lambda c=conv, a=args: c(*a))
            row.update(timing.as_row(name))
        graph, _ = record(lambda a=args: cufft_conv(*a), u.device, warmup=2)
        row.update(time_call(graph.replay).as_row("cufft_graph"))  # no launch cost at all
        row.update(_timed("monarch", causal_conv, u, plan, skip, want, precision, num_warps))
        if plan["n"] >= MIN_FFT3:
            plan3 = make_plan3(k, length)
            row.update(_timed("monarch3", causal_conv3, u, plan3, skip, want, precision, num_warps))
        yield row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exactness only (CPU interpreter)")
    parser.add_argument("--out", help="results JSON (with --check: not needed)")
    parser.add_argument("--lengths", default="1024,4096,16384")
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--precision", choices=["ieee", "tf32"], default="tf32")
    parser.add_argument(
        "--num-warps", type=int, default=None, help="warps a program (default: by tile size)"
    )
    args = parser.parse_args(argv)
    if args.check:
        print(f"two stages, largest relative error against fftconv: {check([300, 1024, 2048]):.2e}")
        print(f"three stages: {check([3000, 4096], stages=3):.2e}")
        return 0
    if not torch.cuda.is_available() or args.out is None:
        parser.error("timing needs a CUDA GPU and --out (--check runs on the CPU)")
    lengths = [int(x) for x in args.lengths.split(",")]
    command = shlex.join(["python3", "scripts/monarch_fftconv_probe.py", *sys.argv[1:]])
    result = {**provenance(command), "rows": []}
    # written after every length
    for row in bench(lengths, args.width, args.precision, args.num_warps):
        print(row, flush=True)
        result["rows"].append(row)
        runs.write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
