"""Probe (issue 16): the kernels behind torch.fft's transforms on CUDA, and an inverse real FFT
computed as a half-size complex one.

The training profile at 16K (`profile_training_h100.json`) lists a device-to-device copy and a float
multiplication, each about a tenth of the step, that the algorithm does not contain. Per length
this lists the CUDA kernels of `rfft` and `irfft` with each normalisation (the copy: cuFFT's
complex-to-real transform overwrites its input, so torch copies it first; the multiplication: the
1 / n of the default normalisation, a pass of its own) and of a half-size complex inverse. Then it
times the spectrum product followed by `irfft`, against the product packed by a torch.compile'd
kernel for a half-size complex inverse (a real signal of n = 2m steps read as m complex numbers
has a spectrum one element-wise step away from its real spectrum; chapter 9 derives it), which
needs no copy; and the same with `hyena_lite.packed_inverse`'s Triton kernel, which packs in one
pass (`kernel_*`).

    python scripts/fft_kernels_probe.py --out results.json --lengths 16384
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable

import torch
from torch import Tensor
from torch.profiler import ProfilerActivity, profile

from hyena_lite import packed_inverse as library
from hyena_lite import runs
from hyena_lite.provenance import provenance

REPEATS = 5  # profiled calls per listing


def kernels(fn: Callable[[], object]) -> dict[str, list[float]]:
    """The CUDA kernels `fn` launches: name (cut to 70 characters) -> [calls per call, µs per
    call], from the profiler over REPEATS calls after one warm-up."""
    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(REPEATS):
            fn()
        torch.cuda.synchronize()
    out = {}
    for event in prof.key_averages():
        total = getattr(event, "device_time_total", 0) or getattr(event, "cuda_time_total", 0)
        if total and event.device_type.name == "CUDA":
            out[event.key[:70]] = [event.count / REPEATS, round(total / REPEATS, 1)]
    return out


def median_ms(fn: Callable[[], object], repeats: int = 50) -> float:
    """The median of `repeats` calls of `fn`, each timed by CUDA events, after three warm-ups."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def _packed(a_re: Tensor, a_im: Tensor, b_re: Tensor, b_im: Tensor) -> Tensor:
    """A + B + i e^(i pi k / m) (A - B) for k = 0 .. m-1, as a real view [..., m, 2]: with
    A = X_k and B = conj(X_(m - k)), twice the m-point spectrum of the signal read as complex."""
    m = a_re.shape[-1]
    wide = torch.promote_types(a_re.dtype, torch.float32)
    angle = torch.arange(m, device=a_re.device, dtype=wide) * (torch.pi / m)
    c, s = torch.cos(angle), torch.sin(angle)
    d_re, d_im = a_re - b_re, a_im - b_im
    re, im = a_re + b_re - c * d_im - s * d_re, a_im + b_im + c * d_re - s * d_im
    return torch.stack((re, im), -1).to(a_re.dtype)


def _product(s: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
    """The real and imaginary parts of s * k, from real views [..., 2]."""
    return s[..., 0] * k[..., 0] - s[..., 1] * k[..., 1], s[..., 0] * k[..., 1] + s[..., 1] * k[
        ..., 0
    ]


def packed_product(s: Tensor, k: Tensor) -> Tensor:
    """The product of two real signals' spectra (real views [..., m + 1, 2]) packed for a half-size
    complex inverse, the mirrored term computed from the mirrored inputs."""
    m = s.shape[-2] - 1
    a_re, a_im = _product(s[..., :m, :], k[..., :m, :])
    b_re, b_im = _product(s[..., 1:, :].flip(-2), k[..., 1:, :].flip(-2))
    return _packed(a_re, a_im, b_re, -b_im)


def probe(length: int, width: int) -> dict:
    """The kernel listings and times at one sequence length (FFT size 2L) and width."""
    n = 2 * length
    x = torch.randn(1, width, n, device="cuda")
    spec = torch.fft.rfft(x)
    kspec = torch.fft.rfft(torch.randn(width, n, device="cuda"))
    half = torch.view_as_complex(x.view(1, width, n // 2, 2))
    row: dict = {"L": length}
    for norm in ("backward", "forward"):
        row[f"rfft_{norm}"] = kernels(lambda norm=norm: torch.fft.rfft(x, norm=norm))
        row[f"irfft_{norm}"] = kernels(lambda norm=norm: torch.fft.irfft(spec, n=n, norm=norm))
    row["ifft_c2c_half_unscaled"] = kernels(lambda: torch.fft.ifft(half, norm="forward"))
    packed = torch.compile(packed_product, dynamic=False, fullgraph=True)
    real_s, real_k = torch.view_as_real(spec), torch.view_as_real(kspec)

    def current() -> Tensor:
        return torch.fft.irfft(spec * kspec, n=n, norm="forward")

    def halfsize() -> Tensor:
        return library.packed_inverse(torch.view_as_complex(packed(real_s, real_k)))

    def kernel() -> Tensor:
        return library.packed_inverse(library.packed_product(spec, kspec))

    want = current()
    row["product_then_inverse"] = {
        "current_ms": median_ms(current),
        "halfsize_ms": median_ms(halfsize),
        "rel_err": float((halfsize() - want).abs().max() / want.abs().max()),
        "current_kernels": kernels(current),
        "halfsize_kernels": kernels(halfsize),
        "kernel_ms": median_ms(kernel),
        "kernel_rel_err": float((kernel() - want).abs().max() / want.abs().max()),
        "kernel_kernels": kernels(kernel),
    }
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="results JSON")
    parser.add_argument("--lengths", default="16384")
    parser.add_argument("--width", type=int, default=768)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        parser.error("this probe lists CUDA kernels: it needs a CUDA GPU")
    command = shlex.join(["python3", "scripts/fft_kernels_probe.py", *sys.argv[1:]])
    result = {**provenance(command), "rows": []}
    for length in (int(x) for x in args.lengths.split(",")):
        result["rows"].append(probe(length, args.width))
        runs.write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
