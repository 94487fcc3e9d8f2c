"""The `generate` command, and the experiments of chapter 10: the quality of recurrent decoding
against the modal order (`quality_sweep`, on `brief_student`), and the decoding speed of a GPT-2
teacher against its student (`speed_benchmark`, results/generation_h200.json).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from hyena_lite import runs
from hyena_lite.decoding import fit_student
from hyena_lite.experiments.bench import gpt2_teacher
from hyena_lite.fastdecode import (
    STEP_HEADROOM,
    StudentGraphDecoder,
    TeacherGraphDecoder,
    cache_length,
)
from hyena_lite.generation import MODES, Decoder, generate, perplexity, synchronize
from hyena_lite.modal import ModalFilter
from hyena_lite.models import convert
from hyena_lite.provenance import provenance
from hyena_lite.timing import time_call


def quality_sweep(
    student: nn.Module,
    windows: Tensor,
    orders: tuple[int, ...] = (2, 4, 8, 16, 32),
    fir: int = 2,
    length: int | None = None,
    batch_size: int = 8,
) -> list[dict[str, Any]]:
    """Per order: perplexity of the convolutional and of the recurrent student, and the filter fit
    errors.

    Filters are fitted over their first `length` taps (default: the windows' length).
    Taught in chapter 10.
    """
    conv = perplexity(student, windows, None, batch_size)
    rows = []
    for order in tqdm(orders, desc="orders", leave=False):
        fitted = fit_student(student, order, fir, length=length or windows.shape[1], progress=False)
        recurrent = perplexity(student, windows, fitted.fits, batch_size)
        rows.append(
            {
                "order": order,
                "conv_ppl": conv,
                "recurrent_ppl": recurrent,
                "relative_gap": recurrent / conv - 1,
                "modes": max(row["modes"] for row in fitted.rows),
                "fit_mean_error": statistics.mean(row["mean_error"] for row in fitted.rows),
                "fit_max_error": max(row["max_error"] for row in fitted.rows),
                "layers": fitted.rows,
            }
        )
    return rows


def brief_student(
    steps: int = 300,
    seq_len: int = 256,
    width: int = 64,
    layers: int = 2,
    lr: float = 3e-3,
    batch_size: int = 4,
    eval_tokens: int = 32_768,
    seed: int = 0,
) -> tuple[nn.Module, Tensor, dict]:
    """A small all-Hyena GPT-2 student trained briefly from scratch on the offline corpus, for
    quality checks.

    Returns (student in eval mode, validation windows [N, seq_len], a description of the run).
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    from hyena_lite.data import (
        eval_windows,
        gpt2_tokenizer,
        iterate_batches,
        load_corpus,
        tokenize_split,
    )
    from hyena_lite.models import convert, layer_mixers
    from hyena_lite.paths import artifacts_dir
    from hyena_lite.training import TrainConfig, train

    tokenizer = gpt2_tokenizer()
    corpus = load_corpus("offline")
    train_tokens, valid = (
        tokenize_split(corpus["train"], tokenizer),
        tokenize_split(corpus["validation"], tokenizer),
    )
    torch.manual_seed(seed)
    shape = GPT2Config(
        n_positions=seq_len,
        n_layer=layers,
        n_embd=width,
        n_head=max(1, width // 64),
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    student = convert(GPT2LMHeadModel(shape), init="random", l_max=seq_len)
    config = TrainConfig(
        steps=steps,
        lr=lr,
        warmup=max(1, steps // 20),
        batch_size=batch_size,
        seq_len=seq_len,
        seed=seed,
        device="cpu" if not torch.cuda.is_available() else "auto",
        tag="generation-quality",
        save_every=max(1, steps // 10),
        context={"student": runs.architecture(student), "data": runs.tokens_digest(train_tokens)},
    )
    # a resumable run in a folder keyed by its identity (hyena_lite.runs): a kill loses one
    # checkpoint interval at most
    key = runs.digest(config.identity())
    config.out_dir = str(artifacts_dir() / "generation-quality" / f"brief-{key}")

    def loss_fn(model: nn.Module, batch: Tensor) -> tuple[Tensor, dict[str, float]]:
        loss = model(input_ids=batch, labels=batch).loss
        return loss, {"loss": loss.item()}

    result = train(
        student,
        loss_fn,
        lambda start: iterate_batches(train_tokens, batch_size, seq_len, seed, start),
        config,
    )
    info = {
        "student": f"GPT-2 shape, {layers} layers, width {width}, every attention -> Hyena order "
        f"2, l_max {seq_len}, {layer_mixers(student)[0].operator.filter_fn.bands} positional bands",
        "training": f"cross-entropy from scratch on the offline corpus: {steps} steps of "
        f"{batch_size} x {seq_len} "
        f"tokens, lr {lr}",
        "final_train_loss": result.records[-1].get("loss") if result.records else None,
    }
    return student.eval(), eval_windows(valid, seq_len, eval_tokens), info


# ------------------------------------------------------------------------------------ benchmark
def time_decoding(
    model: nn.Module,
    mode: str,
    context: int,
    batch: int = 1,
    new_tokens: int = 16,
    warmup: int = 3,
    fits: dict[int, ModalFilter] | None = None,
    seed: int = 0,
    cuda_graph: bool = False,
) -> dict[str, float]:
    """Prefill a random prompt of `context` tokens, then time greedy steps: tokens/s, ms per step,
    memory (MiB).

    state_mb is what the decoder holds for the sequences (KV cache, histories or states); peak_mb
    (CUDA only) the peak memory allocated during the steps, weights included.
    Taught in chapter 10.
    """
    device = next(model.parameters()).device
    generator = torch.Generator(device).manual_seed(seed)
    ids = torch.randint(
        0, model.config.vocab_size, (batch, context), device=device, generator=generator
    )
    with Decoder(
        model, mode, fits=fits, capacity=context + warmup + new_tokens, cuda_graph=cuda_graph
    ) as decoder:
        logits = decoder.prefill(ids)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        times = []
        for i in range(warmup + new_tokens):
            token = logits.argmax(-1, keepdim=True)
            synchronize(device)
            start = time.perf_counter()
            logits = decoder.step(token)
            synchronize(device)
            if i >= warmup:
                times.append(time.perf_counter() - start)
        step_s = statistics.median(times)
        row = {
            "ms_per_step": step_s * 1e3,
            "tok_s": batch / step_s,
            "state_mb": decoder.state_bytes() / 2**20,
        }
        if device.type == "cuda":
            row["peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return row


def time_graph_decoding(
    decoder: StudentGraphDecoder | TeacherGraphDecoder,
    ids: Tensor,
    token: Tensor,
    reference: Tensor | None = None,
    backends: list[Any] | None = None,
    **timing: Any,
) -> dict[str, Any]:
    """Prefill `decoder` with ids [B, T], take its first step with `token` [B, 1] (where its graph
    is recorded and compiled; `backends` limits the attention kernels it may record), then time
    replays of the step by `hyena_lite.timing.time_call` (keyword arguments `timing`).

    Returns setup_s (prefill and first step), ms and iqr_ms per step, tok_s, state_mb, peak_mb
    (CUDA) and, given the eager `reference` logits of that step, max_logit_diff.
    """
    from torch.nn.attention import sdpa_kernel

    device, (batch, context) = ids.device, ids.shape
    start = time.perf_counter()
    with torch.no_grad(), sdpa_kernel(backends) if backends else contextlib.nullcontext():
        decoder.prefill(ids)
        logits = decoder.step(token)
    synchronize(device)
    row: dict[str, Any] = {"setup_s": time.perf_counter() - start}
    if reference is not None:
        row["max_logit_diff"] = float((logits.float() - reference.float()).abs().max())
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    measured = time_call(decoder.replay, reset=lambda: decoder.rewind(context + 1), **timing)
    row.update(
        ms=measured.median_ms, iqr_ms=measured.iqr_ms, tok_s=batch / measured.median_ms * 1e3
    )
    row["state_mb"] = decoder.state_bytes() / 2**20
    if device.type == "cuda":
        row["peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return row


def random_gpt2_pair(
    context: int,
    n_layer: int,
    n_embd: int,
    n_head: int,
    vocab: int,
    device: str,
    dtype: torch.dtype,
) -> tuple[nn.Module, nn.Module]:
    """A GPT-2 teacher of the given shape with random weights, and its all-Hyena student (filters of
    `context`). Taught in chapter 10."""
    torch.manual_seed(0)
    teacher = gpt2_teacher(context, n_layer, n_embd, n_head, vocab).to(device=device, dtype=dtype)
    return teacher, convert(teacher, init="fresh", l_max=context).eval()


def graph_mismatch(
    student: nn.Module, fits: dict[int, ModalFilter], context: int = 64, steps: int = 4
) -> float:
    """Largest |logit| difference between eager and CUDA-graph recurrent decoding of the same greedy
    steps."""
    ids = torch.randint(
        0, student.config.vocab_size, (2, context), device=next(student.parameters()).device
    )
    runs = []
    for graph in (False, True):
        with Decoder(student, "recurrent", fits=fits, cuda_graph=graph) as decoder:
            logits, out = decoder.prefill(ids), []
            for _ in range(steps):
                logits = decoder.step(ids[:, :1])  # the same tokens for both runs
                out.append(logits.float())
        runs.append(torch.stack(out))
    return float((runs[0] - runs[1]).abs().max())


def speed_benchmark(
    contexts: list[int],
    batches: list[int],
    order: int = 16,
    new_tokens: int = 16,
    warmup: int = 3,
    device: str = "cuda",
    dtype: torch.dtype = torch.bfloat16,
    n_layer: int = 12,
    n_embd: int = 768,
    n_head: int = 12,
    vocab: int = 50257,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Tokens/s and memory of decoding at each context: GPT-2 teacher (KV cache) vs its student,
    cached and recurrent.

    Random weights (speed does not depend on them); GPT-2-124M shapes by default. Rows hold
    teacher_*, cached_*, recurrent_* and (CUDA) recurrent_graph_* columns: tok_s, ms_per_step,
    state_mb, peak_mb. A failed CUDA-graph capture is recorded in `graph_error` and those columns
    are left out. On CUDA teacher_graph_* columns (tok_s, ms, iqr_ms, state_mb, peak_mb) hold the
    teacher at its best: its step over a static cache recorded as a CUDA graph
    (`TeacherGraphDecoder`, timed by `time_graph_decoding`). `on_row(results)` is called with the
    results so far after each row (to save partial results).
    """
    longest = max(contexts) + max(warmup + new_tokens, STEP_HEADROOM) + 1
    if (
        torch.device(device).type == "cuda"
    ):  # cuDNN attention re-plans for every new key length (ms of CPU per call)
        torch.backends.cuda.enable_cudnn_sdp(
            False
        )  # so the teacher decodes with flash / memory-efficient attention
    teacher, student = random_gpt2_pair(longest, n_layer, n_embd, n_head, vocab, device, dtype)
    start = time.perf_counter()
    fitted = fit_student(student, order)
    fit_s = time.perf_counter() - start
    cuda = torch.device(device).type == "cuda"
    runs = {
        "teacher": (teacher, "cached", False),
        "cached": (student, "cached", False),
        "recurrent": (student, "recurrent", False),
    }
    results: dict[str, Any] = {
        "model": f"GPT-2 shapes: {n_layer} layers, width {n_embd}, {n_head} heads, vocabulary "
        f"{vocab}, random weights, "
        f"{str(dtype).replace('torch.', '')}; student: every attention -> Hyena order 2",
        "order": order,
        "fit_s": fit_s,
        "fit": fitted.rows,
        "graph_max_logit_diff": None,
        "graph_error": None,
        "new_tokens": new_tokens,
        "warmup": warmup,
        "rows": [],
    }
    if cuda:
        try:
            results["graph_max_logit_diff"] = graph_mismatch(student, fitted.fits)
            runs["recurrent_graph"] = (student, "recurrent", True)
        except Exception as error:  # noqa: BLE001  a capture failure is a result to report, not a crash
            results["graph_error"] = f"{type(error).__name__}: {error}"
    rows = results["rows"]
    for batch in batches:
        for context in tqdm(contexts, desc=f"decode, batch {batch}", leave=False):
            row: dict[str, Any] = {"batch": batch, "context": context}
            for name, (model, mode, graph) in runs.items():
                try:
                    result = time_decoding(
                        model,
                        mode,
                        context,
                        batch,
                        new_tokens,
                        warmup,
                        fitted.fits,
                        cuda_graph=graph,
                    )
                except torch.cuda.OutOfMemoryError:
                    result = {}
                for key in ("tok_s", "ms_per_step", "state_mb", "peak_mb"):
                    row[f"{name}_{key}"] = result.get(key)
                if cuda:
                    torch.cuda.empty_cache()
            if cuda:
                ids = torch.randint(0, vocab, (batch, context + 1), device=device)
                try:
                    decoder = TeacherGraphDecoder(teacher, batch, cache_length(context))
                    result = time_graph_decoding(decoder, ids[:, :-1], ids[:, -1:])
                except torch.cuda.OutOfMemoryError:
                    result = {}
                decoder = None
                for key in ("tok_s", "ms", "iqr_ms", "state_mb", "peak_mb"):
                    row[f"teacher_graph_{key}"] = result.get(key)
                torch.cuda.empty_cache()
            rows.append(row)
            if on_row is not None:
                on_row(results)
    return results


# ------------------------------------------------------------------------------------ command line
def cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `python -m hyena_lite generate`."""
    parser.add_argument(
        "--model",
        help="a folder saved with save_pretrained (teacher or student) holding its tokenizer",
    )
    parser.add_argument("--prompt", help="the text to continue")
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="recurrent",
        help="full: re-run the sequence per token; cached: exact O(L) state; recurrent: modal "
        "O(r) state",
    )
    parser.add_argument(
        "--order",
        type=int,
        default=16,
        help="state dimension r of each filter's modal fit (recurrent)",
    )
    parser.add_argument(
        "--max-new-tokens", type=int, default=32, help="how many tokens to generate"
    )
    parser.add_argument("--temperature", type=float, default=0.0, help="0: greedy; > 0: sample")
    parser.add_argument(
        "--top-k", type=int, default=None, help="sample from the k most likely tokens"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampler")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    bench = parser.add_argument_group(
        "speed benchmark (instead of a prompt): GPT-2 teacher vs its Hyena student"
    )
    bench.add_argument(
        "--benchmark", action="store_true", help="time decoding; write the results to --json"
    )
    bench.add_argument(
        "--contexts",
        default="1024,2048,4096,8192,16384,32768",
        help="comma-separated context lengths",
    )
    bench.add_argument("--batches", default="1,16", help="comma-separated batch sizes")
    bench.add_argument(
        "--dtype", choices=("float32", "bfloat16"), default="bfloat16", help="weights' dtype"
    )
    bench.add_argument(
        "--layers", type=int, default=12, help="layers of the GPT-2 shape (12: GPT-2-124M)"
    )
    bench.add_argument("--width", type=int, default=768, help="width of the GPT-2 shape")
    quality = parser.add_argument_group(
        "quality (instead of a prompt): perplexity of the recurrent vs the "
        "convolutional student, per order"
    )
    quality.add_argument(
        "--quality",
        action="store_true",
        help="measure and write the results to --json; on "
        "--model if given, else on a small student trained here briefly from scratch",
    )
    parser.add_argument(
        "--json",
        metavar="FILE",
        help="--benchmark, --quality: write the results here (-: stdout)",
    )
    quality.add_argument("--orders", default="2,4,8,16,32", help="comma-separated orders r to fit")
    quality.add_argument(
        "--context", type=int, default=256, help="validation window length (tokens)"
    )
    quality.add_argument(
        "--train-steps", type=int, default=300, help="training steps of the brief student"
    )


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"expected comma-separated integers, got {text!r}") from None


def _saver(path: str) -> Callable[[dict[str, Any]], None]:
    """A function that writes results to `path` as JSON, with the command, git commit, hardware and
    versions."""
    import shlex
    import sys

    meta = provenance(shlex.join(["python", "-m", "hyena_lite", "generate", *sys.argv[2:]]))

    def save(results: dict[str, Any]) -> None:
        runs.write_json(path, {**meta, **results})  # atomic; `--json -`: stdout at the end

    return save


def _quality_main(args: argparse.Namespace, device: torch.device) -> int:
    """Perplexity of the recurrent vs the convolutional student per order, on a saved or a briefly
    trained student."""
    save = _saver(args.json)
    if args.model:
        from hyena_lite.data import eval_windows, load_corpus, tokenize_split

        student, tokenizer = _load(args.model, device)
        windows = eval_windows(
            tokenize_split(load_corpus("offline")["validation"], tokenizer), args.context, 32_768
        )
        info = {"student": f"{args.model}"}
    else:
        student, windows, info = brief_student(args.train_steps, args.context)
    rows = quality_sweep(student.to(device), windows, tuple(_ints(args.orders)))
    save({**info, "validation_tokens": windows.numel(), "rows": rows})
    for row in rows:
        print(
            f"order {row['order']:>3} ({row['modes']} modes): perplexity conv "
            f"{row['conv_ppl']:.3f} recurrent "
            f"{row['recurrent_ppl']:.3f} ({100 * row['relative_gap']:+.3f}%), filter error mean "
            f"{row['fit_mean_error']:.2e} max {row['fit_max_error']:.2e}"
        )
    print(f"wrote {args.json}")
    return 0


def _load(folder: str, device: torch.device) -> tuple[nn.Module, Any]:
    """A saved model (teacher or student) in eval mode on `device`, and its tokenizer."""
    from pathlib import Path

    from transformers import AutoModelForCausalLM, AutoTokenizer

    import hyena_lite.students  # noqa: F401  registers the student classes with AutoModelForCausalLM

    path = Path(folder)
    if not (path / "config.json").is_file():
        raise SystemExit(
            f"{path} holds no config.json: pass a model folder saved with save_pretrained"
        )
    return AutoModelForCausalLM.from_pretrained(path).to(
        device
    ).eval(), AutoTokenizer.from_pretrained(path)


def _benchmark_main(args: argparse.Namespace, device: torch.device) -> int:
    """Run `speed_benchmark`, print a table and write the JSON with the command, commit and
    hardware."""
    save = _saver(args.json)

    results = speed_benchmark(
        _ints(args.contexts),
        _ints(args.batches),
        args.order,
        device=str(device),
        dtype=getattr(torch, args.dtype),
        n_layer=args.layers,
        n_embd=args.width,
        n_head=max(1, args.width // 64),
        on_row=save,
    )
    save(results)
    for row in results["rows"]:
        print(
            " ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                for k, v in row.items()
                if k in ("batch", "context") or k.endswith("tok_s") or k.endswith("state_mb")
            )
        )
    print(f"wrote {args.json}")
    return 0


def cli_main(args: argparse.Namespace) -> int:
    """Continue a prompt and print the continuation, fit errors and tokens/s; or run --benchmark or
    --quality."""
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if (args.benchmark or args.quality) and not args.json:
        raise ValueError("give --json FILE (or --json - for stdout) for the results")
    if args.benchmark:
        return _benchmark_main(args, device)
    if args.quality:
        return _quality_main(args, device)
    if not args.model or args.prompt is None:
        raise SystemExit(
            "give --model DIR and --prompt TEXT (or --benchmark / --quality with --json FILE)"
        )
    model, tokenizer = _load(args.model, device)
    ids = torch.tensor([tokenizer.encode(args.prompt)], device=device)
    if ids.shape[1] == 0:
        raise SystemExit("the prompt encodes to no tokens; give some text")
    fits = None
    if args.mode == "recurrent":
        fitted = fit_student(model, args.order)
        fits = fitted.fits
        for row in fitted.rows:
            print(
                f"layer {row['layer']}: order {row['order']} ({row['modes']} complex modes), "
                f"filter error "
                f"mean {row['mean_error']:.2e} max {row['max_error']:.2e}"
            )
    out = generate(
        model,
        ids,
        args.max_new_tokens,
        args.mode,
        args.order,
        fits,
        args.temperature,
        args.top_k,
        args.seed,
    )
    print(args.prompt + tokenizer.decode(out.tokens[0].tolist()))
    print(
        f"{args.mode}: {out.tokens.shape[1]} new tokens, {out.tokens_per_s:.1f} tokens/s "
        f"(prefill {out.prefill_s * 1e3:.1f} ms)"
    )
    return 0
