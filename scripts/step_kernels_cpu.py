"""A CPU proxy for the all-Hyena student's one-token decoding step (issue 16): how many kernels
torch.compile (inductor) makes of the whole step (all layers, MLPs, head) and how fast the step runs
on the CPU, for the step before its restructuring (`LoopStep` below: the stage-by-stage loop as it
was, kept only here) and after it (`hyena_lite.fastdecode.ModalStep`).

Kernels are counted as launches in inductor's generated code for the whole step: with its CPU
backend (C++, `cpp_fused_*`, which fuses far more than the GPU's) and, where the `triton` package
imports, with inductor's Triton backend generating code for the CPU (`triton_*`; code generation
only, nothing is compiled or run), whose fusion decisions are largely those the GPU's Triton
backend makes. Both are proxies: the GPU's own count comes from scripts/profile_h200.py on the
device. GPT-2-124M
shapes, float32, random weights, batch 1, a small modal fit (speed does not depend on it); times are
medians and interquartile ranges over blocks of calls (`hyena_lite.timing`).

    PYTHONPATH=. python3 scripts/step_kernels_cpu.py                  # ~6 minutes on 2 cores
    pip install --target /tmp/triton triton    # the Triton-backend count, outside the environment
    PYTHONPATH=.:/tmp/triton python3 scripts/step_kernels_cpu.py
    PYTHONPATH=. python3 scripts/step_kernels_cpu.py --layers 2 --out /tmp/s.json  # a quick look
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import importlib.util
import json
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import torch
from torch import Tensor

from hyena_lite import fastdecode
from hyena_lite.decoding import fit_student
from hyena_lite.experiments.bench import gpt2_teacher
from hyena_lite.fastdecode import ModalStep, StudentGraphDecoder
from hyena_lite.generation import Decoder
from hyena_lite.modal import ModalFilter
from hyena_lite.models import convert
from hyena_lite.operator import HyenaOperator
from hyena_lite.provenance import command_line, provenance
from hyena_lite.timing import time_call

RESULT = Path(__file__).resolve().parents[1] / "hyena_lite" / "results" / "step_kernels_cpu.json"


class LoopStep(ModalStep):
    """The step before issue 16's restructuring: per stage, shift the recent inputs, the FIR dot
    product with the skip and the modes' output, then that stage's state update; the next stage
    waits for this one."""

    def __init__(self, op: HyenaOperator, fit: ModalFilter, batch: int) -> None:
        super().__init__(op, fit, batch)
        N, D = op.order, op.d_model
        fir = fit.fir.to(self.poles_re).view(N, D, -1).flip(-1).contiguous()
        self.register_buffer("fir", fir, persistent=False)  # reversed: fir[..., -1] is h_0
        skips = op.long_filters(1)[1].detach().float().contiguous()
        self.register_buffer("skips", skips, persistent=False)

    def forward(self, u: Tensor) -> Tensor:
        op, N, D = self.op, self.order, self.width
        p = op.in_proj(u[:, 0]).float()  # [B, (N + 1) D]
        window = torch.cat([self.window[..., 1:], p[..., None]], dim=-1)
        self.window.copy_(window)
        z = ((window * self.conv_w).sum(-1) + self.conv_b).to(u.dtype).float()
        y = z[:, N * D :]
        for n in range(N):
            recent = torch.cat([self.recent[n, ..., 1:], y[..., None]], dim=-1)  # [B, D, F]
            re, im = self.state_re[n], self.state_im[n]
            out = (
                (recent * self.fir[n]).sum(-1)
                + self.skips[n] * y
                + (self.res_re[n] * re - self.res_im[n] * im).sum(-1)
            )
            new_re = self.poles_re[n] * re - self.poles_im[n] * im + recent[..., :1]
            new_im = self.poles_re[n] * im + self.poles_im[n] * re
            self.state_re[n].copy_(new_re)
            self.state_im[n].copy_(new_im)
            self.recent[n].copy_(recent)
            y = z[:, n * D : (n + 1) * D] * out
        return op.out_proj(y.to(u.dtype))[:, None]


STEPS: dict[str, type[ModalStep]] = {"loop": LoopStep, "batched": ModalStep}


def decoder(student: Any, fits: dict, step: str, compile: bool) -> StudentGraphDecoder:
    """A batch-1 StudentGraphDecoder whose layers run the step `step` ("loop" or "batched")."""
    with mock.patch.object(fastdecode, "ModalStep", STEPS[step]):
        return StudentGraphDecoder(student, fits, 1, compile=compile)


def launches(code: str) -> dict[str, Any]:
    """Kernel launches in inductor's wrapper code: fused kernels (C++ or Triton) and extern kernels
    (matrix products), each call site once (a kernel reused by several layers counts each time)."""
    fused = re.findall(r"^\s+((?:cpp_fused|triton)_\w+)(?:\.run)?\(", code, re.M)
    extern = re.findall(r"^\s+(extern_kernels\.\w+)\(", code, re.M)
    kinds = collections.Counter(re.sub(r"_\d+$", "", name) for name in fused)
    return {
        "fused": len(fused),
        "extern": len(extern),
        "total": len(fused) + len(extern),
        "fused_by_name": dict(kinds.most_common()),
    }


class _CodeOnly(Exception):
    """Raised after inductor has generated a graph's code, so that nothing is compiled."""


@contextlib.contextmanager
def triton_codegen(sources: list[str]) -> Iterator[None]:
    """Inductor generating Triton code for the CPU: the first graph's code is appended to `sources`,
    then `_CodeOnly` is raised (wrapped by inductor) before any Triton compile, which needs a GPU
    driver; the code's backend hash (which asks the driver) is a placeholder."""
    from torch._inductor.graph import GraphLowering

    generate = GraphLowering.codegen

    def codegen(self: GraphLowering, *args: Any, **kwargs: Any) -> Any:
        code = generate(self, *args, **kwargs)
        sources.append(getattr(code[0], "value", code[0]))
        raise _CodeOnly

    with (
        torch._inductor.config.patch(cpu_backend="triton"),
        mock.patch.object(GraphLowering, "codegen", codegen),
        mock.patch("torch.utils._triton.triton_hash_with_backend", lambda: "codegen-only"),
    ):
        yield


def reference_error(student: Any, fits: dict, step: str, ids: Tensor, steps: int) -> float:
    """Largest |logit difference| of the eager step against RecurrentDecoder over `steps` steps."""
    prompt, later = ids[:, :-steps], range(ids.shape[1] - steps, ids.shape[1])
    with Decoder(student, "recurrent", fits=fits) as plain:
        want = [plain.prefill(prompt)] + [plain.step(ids[:, t : t + 1]) for t in later]
    fast = decoder(student, fits, step, compile=False)
    have = [fast.prefill(prompt)] + [fast.step(ids[:, t]) for t in later]
    return max(float((a - b).abs().max()) for a, b in zip(have, want, strict=True))


def measure(student: Any, fits: dict, step: str, ids: Tensor, args: argparse.Namespace) -> dict:
    """One step variant: its error against the reference, the kernels of its compiled whole step
    (C++ and, where Triton imports, Triton code), its eager and compiled CPU step time."""
    row: dict[str, Any] = {"step": step}
    row["max_abs_error_vs_recurrent"] = reference_error(student, fits, step, ids, 8)
    prompt = ids[:, :-1]

    def timed(compiled: bool) -> dict[str, Any]:
        fast = decoder(student, fits, step, compile=compiled)
        fast.prefill(prompt)
        start = time.perf_counter()
        code: list[str] = []
        with torch.no_grad():
            if compiled:
                from torch._inductor.utils import run_and_get_code

                torch._dynamo.reset()
                _, code = run_and_get_code(fast.replay)
            else:
                fast.replay()
        first_s = time.perf_counter() - start
        timing = time_call(fast.replay, lambda: fast.rewind(prompt.shape[1]), blocks=args.blocks)
        out = {"first_call_s": round(first_s, 1), **timing.to_dict()}
        if compiled:
            out["graphs"] = len(code)
            out["kernels"] = launches("\n".join(code))
        return out

    row["eager"] = timed(False)
    row["compiled_cpp"] = timed(True)
    if importlib.util.find_spec("triton") is None:
        row["triton_codegen"] = {"skipped": "the triton package does not import"}
    else:
        sources: list[str] = []
        fast = decoder(student, fits, step, compile=True)
        fast.prefill(prompt)
        torch._dynamo.reset()
        with triton_codegen(sources), torch.no_grad(), contextlib.suppress(Exception):
            fast.replay()  # raises once the step's code is generated
        torch._dynamo.reset()
        if not sources:
            raise RuntimeError("inductor generated no Triton code for the step")
        import triton

        row["triton_codegen"] = {
            "triton": triton.__version__,
            "graphs": len(sources),
            "kernels": launches("\n".join(sources)),
        }
    return row


def arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=12, help="GPT-2 layers (default 12)")
    parser.add_argument("--order", type=int, default=16, help="modal order of the fit")
    parser.add_argument("--fit-taps", type=int, default=64, help="filter taps the fit covers")
    parser.add_argument("--context", type=int, default=64, help="prompt tokens before the step")
    parser.add_argument("--blocks", type=int, default=7, help="timed blocks per measurement")
    parser.add_argument("--out", type=Path, default=RESULT, help="the JSON file to write")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = arguments(sys.argv[1:] if argv is None else argv)
    if args.layers < 1 or args.context < 2:
        raise SystemExit(
            f"need --layers >= 1 and --context >= 2, got {args.layers}, {args.context}"
        )
    options = {k: v for k, v in vars(args).items() if k != "out"}
    command = command_line(["python3", "scripts/step_kernels_cpu.py"], options)
    torch.manual_seed(0)
    l_max = args.context + 16
    teacher = gpt2_teacher(l_max, args.layers)
    student = convert(teacher, init="fresh", l_max=l_max).eval()
    start = time.perf_counter()
    fits = fit_student(student, args.order, length=args.fit_taps, progress=False).fits
    fit_s = time.perf_counter() - start
    ids = torch.randint(0, teacher.config.vocab_size, (1, args.context + 8))
    result: dict[str, Any] = {
        **provenance(command + (f" --out {args.out}" if args.out != RESULT else "")),
        "model": f"GPT-2 shapes: {args.layers} layers, width 768, 12 heads, vocabulary 50257, "
        f"random weights, float32; student: every attention -> Hyena order 2, modal order "
        f"{args.order} fitted to {args.fit_taps} taps ({fit_s:.0f} s)",
        "batch": 1,
        "notes": __doc__.split("\n\n")[1].replace("\n", " ")
        + " `loop`: the step before (stage by stage, each shifting its recent inputs); "
        "`batched`: hyena_lite.fastdecode.ModalStep (every stage's old-state part in one batched "
        "reduction, the gating chain element-wise, recent inputs and modes updated together). "
        "kernels.total = fused + extern (matrix products) launches per step; on the GPU cuBLAS "
        "adds a split-K reduce kernel to some matrix-vector products, which no count here sees. "
        "CPU step times are bound by reading the weights (the head's 50257 x 768 above all), so "
        "they barely move with the Hyena step's kernel count.",
        "rows": [],
    }
    for step in STEPS:
        print(f"{step} ...", flush=True)
        result["rows"].append(measure(student, fits, step, ids, args))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        print(json.dumps(result["rows"][-1], indent=1), flush=True)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
