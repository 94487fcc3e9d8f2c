"""Which CUDA kernels torch.fft's transforms launch (clones, normalisation passes), and their time;
and an inverse real FFT as a half-size complex one, its input packed by a compiled kernel."""

import json
import sys

import torch
from torch.profiler import ProfilerActivity, profile

from hyena_lite.fftconv import packed_inverse, packed_product


def kernels(fn, reps=5):
    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            fn()
        torch.cuda.synchronize()
    out = {}
    for e in prof.key_averages():
        t = getattr(e, "device_time_total", 0) or getattr(e, "cuda_time_total", 0)
        if t and e.device_type.name == "CUDA":
            out[e.key[:70]] = [e.count / reps, round(t / reps, 1)]
    return out


def median_ms(fn, reps=50):
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    return sorted(times)[len(times) // 2]


def probe(length: int, d: int = 768) -> dict:
    """The kernels and times at one sequence length (FFT size 2L), GPT-2's width."""
    n = 2 * length
    x = torch.randn(1, d, n, device="cuda")
    spec = torch.fft.rfft(x)
    kspec = torch.fft.rfft(torch.randn(d, n, device="cuda"))
    half = torch.view_as_complex(x.view(1, d, n // 2, 2))
    res = {}
    for norm in ("backward", "forward"):
        res[f"rfft_{norm}"] = kernels(lambda norm=norm: torch.fft.rfft(x, norm=norm))
        res[f"irfft_{norm}"] = kernels(lambda norm=norm: torch.fft.irfft(spec, n=n, norm=norm))
    res["ifft_c2c_half_unscaled"] = kernels(lambda: torch.fft.ifft(half, norm="forward"))
    packed = torch.compile(packed_product, dynamic=False, fullgraph=True)
    sr, kr = torch.view_as_real(spec), torch.view_as_real(kspec)

    def current():
        return torch.fft.irfft(spec * kspec, n=n, norm="forward")

    def halfsize():
        return packed_inverse(packed(sr, kr))

    err = (halfsize() - current()).abs().max() / current().abs().max()
    res["product_then_inverse"] = {
        "current_ms": median_ms(current),
        "halfsize_ms": median_ms(halfsize),
        "rel_err": float(err),
        "current_kernels": kernels(current),
        "halfsize_kernels": kernels(halfsize),
    }
    return res


def main() -> None:
    lengths = [int(x) for x in (sys.argv[1] if len(sys.argv) > 1 else "16384").split(",")]
    rows = {length: probe(length) for length in lengths}
    print(json.dumps({"device": torch.cuda.get_device_name(), "rows": rows}, indent=1))


main()
