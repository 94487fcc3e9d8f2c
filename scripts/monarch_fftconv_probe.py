"""Probe (issue 16): `hyena_lite.monarch_conv`'s causal long convolution (one Triton program per
channel, its FFT as matrix products, FlashFFTConv-style: Fu et al., 2023) timed against the FFT
convolution the library runs (`hyena_lite.fftconv.fftconv`: cuFFT's rfft and irfft with a complex
product between), and checked against it.

The profile of the training step at 16K (`profile_training_h100.json`) spends a quarter of its GPU
work in ten FFTs and a sixth in the copies and scaling passes torch adds around each inverse FFT;
a convolution that keeps a channel's signal on chip from the forward FFT to the inverse one reads
the signal once and writes it once. Both kernels (two stages; three from n = 8192) are timed per
length, eagerly and as CUDA graphs; the baseline eagerly, compiled and as a CUDA graph.

Timed on an H100 (monarch_h100.json): 2.0x the cuFFT convolution at its best at 1K (two stages),
1.5x at 2K and 4K (three stages at 4K), 1.14x slower at 8K; from 16K no kernel builds (one program
cannot hold a channel of 32K points).

    python scripts/monarch_fftconv_probe.py --out results.json --lengths 1024,4096,8192,16384
    TRITON_INTERPRET=1 python scripts/monarch_fftconv_probe.py --check   # exactness, on a CPU
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Iterator

import torch

from hyena_lite import monarch_conv, runs, toeplitz_conv
from hyena_lite.cudagraph import record
from hyena_lite.fftconv import fftconv
from hyena_lite.provenance import provenance
from hyena_lite.timing import time_call


def check(lengths: list[int], stages: int = 2) -> float:
    """Largest error of the two- or three-stage kernel (ieee) against `fftconv`, relative to the
    output's largest value, over small random problems."""
    torch.manual_seed(0)
    worst = 0.0
    for length in lengths:
        u, k, skip = torch.randn(1, 2, length), torch.randn(2, length) / length**0.5, torch.randn(2)
        plan = monarch_conv.make_plan(k, length, stages)
        got, want = monarch_conv.causal_conv(u, plan, skip, precision="ieee"), fftconv(u, k, skip)
        worst = max(worst, float((got - want).abs().max() / want.abs().max()))
    return worst


def cufft_conv(u: torch.Tensor, spectrum: torch.Tensor, skip: torch.Tensor, n: int) -> torch.Tensor:
    """The library's convolution with the filter spectrum given (as its inference path caches it):
    rfft, complex product, irfft, the first L steps plus D u."""
    y = torch.fft.irfft(torch.fft.rfft(u, n=n) * spectrum, n=n)[..., : u.shape[-1]]
    return y + skip[:, None] * u


def _timed(name: str, u, plan, skip, want, precision, num_warps) -> dict:
    """One kernel's row entries: its split, warps, error against `fftconv` and time, or the error
    that stopped it (too large a tile for the chip, say)."""
    warps = num_warps or monarch_conv.default_warps(plan["sizes"])
    entry = {
        f"{name}_split": " x ".join(map(str, plan["sizes"].values())),
        f"{name}_num_warps": warps,
    }

    def conv() -> torch.Tensor:
        return monarch_conv.causal_conv(u, plan, skip, precision=precision, num_warps=warps)

    try:
        got = conv()
    except Exception as error:  # noqa: BLE001  recorded, the other kernel still runs
        return {**entry, f"{name}_error": repr(error)}
    entry[f"{name}_rel_err"] = float((got - want).abs().max() / want.abs().max())
    graph, _ = record(conv, u.device)
    return {
        **entry,
        **time_call(conv).as_row(name),
        **time_call(graph.replay).as_row(f"{name}_graph"),
    }


def bench(
    lengths: list[int],
    width: int,
    precision: str,
    num_warps: int | None = None,
    toeplitz: tuple[tuple[int, int, int, str], ...] = (),
) -> Iterator[dict]:
    """Per length, batch 1, `width` channels, float32: the two-stage kernel and (from n = 8192)
    the three-stage one against `cufft_conv`, eager and compiled by torch.compile (inductor fuses
    the padding, slice and skip around cuFFT's calls) and replayed as a CUDA graph (no launch
    cost: the baseline at its best; the kernels are graphed too), all with the filter's spectrum
    computed beforehand (median and IQR of time_call), and each kernel's error against
    `fftconv`; also `toeplitz_conv`'s direct convolution per (block, rows, warps, precision) in
    `toeplitz`, and causal attention's core for reference; one row a length, as it finishes."""
    compiled = torch.compile(cufft_conv, dynamic=False)
    for length in lengths:
        u = torch.randn(1, width, length, device="cuda")
        k = torch.randn(width, length, device="cuda") / length**0.5
        skip = torch.randn(width, device="cuda")
        want = fftconv(u, k, skip)
        n = monarch_conv.fft_length(length)
        spectrum = torch.fft.rfft(k, n=n)
        row = {"L": length, "n": n}
        for name, conv in (("cufft", cufft_conv), ("cufft_compiled", compiled)):
            args = (u, spectrum, skip, n)
            timing = time_call(lambda c=conv, a=args: c(*a))
            row.update(timing.as_row(name))
        graph, _ = record(lambda a=args: cufft_conv(*a), u.device, warmup=2)
        row.update(time_call(graph.replay).as_row("cufft_graph"))  # no launch cost at all
        for name, stages in (("monarch", 2), ("monarch3", 3)):
            if stages == 2 or n >= monarch_conv.MIN_FFT3:
                plan = monarch_conv.make_plan(k, length, stages)
                row.update(_timed(name, u, plan, skip, want, precision, num_warps))
        for shape in toeplitz:
            row.update(_toeplitz_timed(u, k, skip, want, *shape))
        row.update(_attention_core(length, width))
        yield row


def _toeplitz_timed(u, k, skip, want, block: int, rows: int, warps: int, precision: str) -> dict:
    """`toeplitz_conv.causal_conv` with one tile shape, as the fast path runs it (bf16 signal and
    output for bf16 products): its error against `fftconv` and its time as a CUDA graph, or the
    error that stopped it."""
    name = f"toeplitz_b{block}_r{rows}_w{warps}_{precision}"
    signal = u.to(toeplitz_conv.OPERANDS[precision])

    def conv() -> torch.Tensor:
        return toeplitz_conv.causal_conv(signal, plan, skip, None, signal.dtype, warps)

    try:
        plan = toeplitz_conv.make_plan(k, u.shape[-1], precision, block, rows)
        got = conv()
        graph, _ = record(conv, u.device)
    except Exception as error:  # noqa: BLE001  recorded, the other shapes still run
        return {f"{name}_error": repr(error)[:300]}
    error = float((got.float() - want).abs().max() / want.abs().max())
    return {f"{name}_rel_err": error, **time_call(graph.replay).as_row(f"{name}_graph")}


def _attention_core(length: int, width: int, head: int = 64) -> dict:
    """What the convolutions compete with: causal flash attention over `width / head` heads, bf16,
    batch 1, as a CUDA graph (the attention block's core, without its projections)."""
    q, k, v = (
        torch.randn(1, width // head, length, head, device="cuda", dtype=torch.bfloat16)
        for _ in range(3)
    )

    def core() -> torch.Tensor:
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)

    graph, _ = record(core, q.device)
    return time_call(graph.replay).as_row("attention_core_graph")


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
    parser.add_argument(
        "--toeplitz",
        default="",
        help="toeplitz_conv tile shapes to time, block:rows:warps:precision, comma-separated",
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
    shapes = tuple(
        (int(b), int(r), int(w), p)
        for b, r, w, p in (item.split(":") for item in args.toeplitz.split(",") if item)
    )
    for row in bench(lengths, args.width, args.precision, args.num_warps, shapes):
        print(row, flush=True)
        result["rows"].append(row)
        runs.write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
