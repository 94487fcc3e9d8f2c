"""Probe (issue 16): the Hyena block's FFT convolution with cuFFT in float16 instead of float32.

From 16K the block's forward is bound by its FFT passes (`profile_h200.json`: at 16K the two rffts,
two irffts, two spectrum products and the irfft's input copies are 0.75 of its 0.97 ms of kernels),
each moving a padded float32 signal or a complex64 half spectrum. cuFFT also transforms float16
(powers of two), which halves those bytes. Float16 overflows at 65,504, so the signal is scaled by
1 / sqrt(n) before the forward FFT and the filter's spectrum by 1 / sqrt(n) too: the spectra stay
near the signal's own size and the unnormalised inverse gives the convolution unscaled.

Per length: a Hyena operator's first long convolution (GPT-2-small width, random weights, a
random bf16 input), its error against a float64 reference for float32 and float16 FFTs, and both
timed as CUDA graphs (median and IQR of `time_call`).

    python scripts/half_fft_probe.py --out results.json --lengths 4096,16384,65536
"""

from __future__ import annotations

import argparse
import shlex
import sys

import torch

from hyena_lite import runs
from hyena_lite.cudagraph import record
from hyena_lite.fftconv import fft_size
from hyena_lite.operator import HyenaOperator
from hyena_lite.provenance import provenance
from hyena_lite.timing import time_call


def conv_fp32(z: torch.Tensor, spectrum: torch.Tensor, n: int) -> torch.Tensor:
    """The library's inference convolution: float32 rfft, product with the cached spectrum,
    irfft, the first L steps."""
    return torch.fft.irfft(torch.fft.rfft(z.float(), n=n) * spectrum, n=n)[..., : z.shape[-1]]


def half_spectrum(k: torch.Tensor, n: int) -> torch.Tensor:
    """The filter's spectrum for `conv_fp16`: computed in float32, scaled by 1 / sqrt(n), stored
    as complex32."""
    return (torch.fft.rfft(k.float(), n=n) / n**0.5).to(torch.complex32)


def conv_fp16(z: torch.Tensor, spectrum: torch.Tensor, n: int) -> torch.Tensor:
    """The same convolution with float16 FFTs: the signal scaled by 1 / sqrt(n), the spectrum
    by 1 / sqrt(n) (`half_spectrum`), so the unnormalised inverse needs no scaling."""
    scaled = (z.float() * n**-0.5).half()
    product = torch.fft.rfft(scaled, n=n) * spectrum
    return torch.fft.irfft(product, n=n, norm="forward")[..., : z.shape[-1]]


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """Root-mean-square error relative to the reference's root mean square."""
    diff = (got.double() - want).pow(2).mean().sqrt()
    return float(diff / want.pow(2).mean().sqrt())


def probe(length: int, width: int) -> dict:
    """One row: errors and CUDA-graph timings of both convolutions at `length`."""
    torch.manual_seed(0)
    operator = HyenaOperator(width, length).cuda()
    u = torch.randn(1, length, width, device="cuda")
    with torch.no_grad():
        gates, v = operator.gates_and_value(u)
        k, _ = operator.long_filters(length)
    z, n = v.to(torch.bfloat16), fft_size(length)
    want = torch.fft.irfft(
        torch.fft.rfft(z.double(), n=n) * torch.fft.rfft(k[0].double(), n=n), n=n
    )[..., :length]
    row = {"L": length, "n": n, "width": width}
    sides = {
        "fp32": (conv_fp32, torch.fft.rfft(k[0], n=n)),
        "fp16": (conv_fp16, half_spectrum(k[0], n)),
    }
    for name, (conv, spectrum) in sides.items():
        try:
            got = conv(z, spectrum, n)
            row[f"{name}_rel_err"] = relative_error(got, want)
            row[f"{name}_finite"] = bool(torch.isfinite(got).all())
            graph, _ = record(lambda c=conv, s=spectrum: c(z, s, n), "cuda", warmup=2)
            row.update(time_call(graph.replay).as_row(f"{name}_graph"))
        except Exception as error:  # noqa: BLE001  a failure is a result
            row[f"{name}_error"] = f"{type(error).__name__}: {error}"[:300]
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="results JSON")
    parser.add_argument("--lengths", default="4096,16384,65536")
    parser.add_argument("--width", type=int, default=768)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        parser.error("this probe times cuFFT: it needs a CUDA GPU")
    command = shlex.join(["python3", "scripts/half_fft_probe.py", *sys.argv[1:]])
    result = {**provenance(command), "rows": []}
    for length in (int(x) for x in args.lengths.split(",")):
        row = probe(length, args.width)
        print(row, flush=True)
        result["rows"].append(row)
        runs.write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
