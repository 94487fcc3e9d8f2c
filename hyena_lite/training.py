"""The one training loop of hyena_lite: AdamW, warm-up plus cosine, accumulation, checkpoints, exact
resume (also after SIGTERM or SIGINT, which stop a run cleanly after the current step).

Built on `accelerate`: bf16 autocast on CUDA, and several processes (GPUs, or CPU processes over
gloo) through `accelerate launch` or torchrun with no code change. The global batch of one optimiser
step is batch_size x grad_accum sequences whatever the number of processes N: every process draws
the same global micro-batches of batch_size sequences and trains on its contiguous 1/N of the rows;
DDP averages the gradients (the full-batch mean gradient when the shards hold equal numbers of
tokens: no padding), the logged loss and metrics are means over processes, and only the main process
writes files.
"""

from __future__ import annotations

import dataclasses
import math
import random
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from hyena_lite import runs
from hyena_lite.batches import Batch, batch_tokens, map_batch, mean_over_processes, shard
from hyena_lite.checkpoints import (
    checkpoint_step,
    own_rng_state,
    read_log,
    rng_state,
    set_rng_state,
    stop_requests,
    write_log,
)
from hyena_lite.cpu_memory import keep_freed_memory
from hyena_lite.recompiles import allow_recompiles

LossFn = Callable[[nn.Module, Batch], "tuple[torch.Tensor, dict[str, float]]"]
BatchesFn = Callable[[int], Iterable[Batch]]
EvalFn = Callable[[nn.Module], "dict[str, float]"]

# Fields that change how a run is watched, not what it computes: a finished run is reused across
# them.
_COSMETIC_FIELDS = ("out_dir", "progress", "eval_every", "save_every", "save_seconds", "compile")
# torch.compile's settings for TrainConfig.compile: "regions" compiles each repeated layer once
# (accelerate's regional compilation: one compilation serves every layer of a class), "whole" the
# model as one graph; COMPILE_BACKEND is "inductor" (tests use cheaper ones)
COMPILE_MODES = ("no", "regions", "whole")
COMPILE_BACKEND = "inductor"


@dataclass
class TrainConfig:
    """Everything that defines a training run; `tag` names what is trained (stage, teacher,
    data). Taught in chapter 6."""

    steps: int
    lr: float = 1e-3
    min_lr: float | None = None  # end of the cosine; None: lr / 10
    warmup: int = 0  # steps of linear warm-up from 0
    # None: cosine from the warm-up's end; f: warmup-stable-decay, the full rate until the last
    # fraction f of the steps, then cosine (a long stable phase lets induction heads form)
    decay_fraction: float | None = None
    weight_decay: float = 0.0  # applied to matrices only, never to biases or norms
    betas: tuple[float, float] = (0.9, 0.95)
    max_grad_norm: float | None = 1.0
    grad_accum: int = 1  # micro-batches per optimiser step
    batch_size: int = (
        8  # sequences per global micro-batch (all processes together; divisible by their number)
    )
    seq_len: int = 128
    seed: int = 0
    mixed_precision: str = "auto"  # "auto": bf16 on CUDA, else "no"; or "no" / "bf16"
    device: str = "auto"  # "auto": CUDA when present; "cpu" forces the CPU
    eval_every: int = 0  # steps between validations (0: only at the end)
    save_every: int = 0  # steps between checkpoints (0: only at the end)
    save_seconds: float = 300.0  # also a checkpoint after this much training since the last (0: no)
    out_dir: str | None = None  # checkpoints and log.json; None: keep nothing
    tag: str = ""
    progress: bool = True
    # torch.compile of the trained model (and a KD stage's teacher), COMPILE_MODES: "no", "regions"
    # or "whole"; how the same steps run, not what they compute (so not part of the identity)
    compile: str = "no"
    # What else decides the result (teacher and its weights, data, student, options); see runs
    context: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.compile not in COMPILE_MODES:
            raise ValueError(
                f"compile must be one of {', '.join(COMPILE_MODES)} (torch.compile of the trained "
                f"model), got {self.compile!r}"
            )
        if self.decay_fraction is not None and not 0.0 < self.decay_fraction <= 1.0:
            raise ValueError(
                f"decay_fraction must be in (0, 1] (the last fraction of the steps that decays), "
                f"or None for cosine throughout; got {self.decay_fraction}"
            )

    def identity(self) -> dict[str, Any]:
        """The fields that decide the result: two configs with equal identities train the same
        model. An empty context is left out, so that keys made from configs without one stay."""
        out = dataclasses.asdict(self)
        for name in _COSMETIC_FIELDS:
            out.pop(name)
        out["betas"] = list(out["betas"])
        if not out["context"]:
            out.pop("context")
        if out["decay_fraction"] is None:  # absent, as context: earlier runs keep their keys
            out.pop("decay_fraction")
        return out

    @property
    def tokens_per_step(self) -> int:
        """Tokens consumed by one optimiser step, if every batch holds batch_size x seq_len
        tokens."""
        return self.batch_size * self.seq_len * self.grad_accum


@dataclass
class TrainResult:
    """What a run did: per-step records (loss, lr, tokens, wall time, metrics) and validations."""

    records: list[dict[str, float]] = field(default_factory=list)
    evals: list[dict[str, float]] = field(default_factory=list)
    finished: bool = False
    skipped: bool = False  # True when a finished run with the same config was found and reused
    out_dir: str | None = None

    @property
    def losses(self) -> list[float]:
        return [r["loss"] for r in self.records]

    @property
    def tokens(self) -> int:
        return int(self.records[-1]["tokens"]) if self.records else 0

    @property
    def wall_seconds(self) -> float:
        return float(self.records[-1]["wall_seconds"]) if self.records else 0.0


class TrainingDiverged(FloatingPointError):
    """Raised when the loss becomes NaN or infinite; the last good checkpoint is kept."""


class TrainingStopped(RuntimeError):
    """Raised when SIGTERM or SIGINT (a time limit, a pre-empted machine, a notebook's interrupt)
    stopped a run; with an out_dir, the checkpoint of the last finished step was saved first, so a
    re-run resumes. `signum` is the signal's number (the command line exits with 128 + signum)."""

    def __init__(self, message: str, signum: int = signal.SIGINT):
        super().__init__(message)
        self.signum = int(signum)


def lr_factor(step: int, config: TrainConfig) -> float:
    """The learning rate of optimiser step `step` as a fraction of config.lr: linear warm-up, then
    cosine (after a stable phase at the full rate when config.decay_fraction is set)."""
    if step < config.warmup:
        return (step + 1) / config.warmup
    min_ratio = (config.lr / 10 if config.min_lr is None else config.min_lr) / config.lr
    start = config.warmup
    if config.decay_fraction is not None:
        start = max(start, round(config.steps * (1 - config.decay_fraction)))
    span = max(1, config.steps - start)
    progress = min(1.0, max(0.0, (step - start) / span))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def _optimizer(params: list[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    # fused on CUDA: the whole update as a few kernels instead of a launch per tensor and operation
    fused = all(p.is_cuda for p in params) or None
    return torch.optim.AdamW(
        [g for g in groups if g["params"]], lr=config.lr, betas=config.betas, fused=fused
    )


def compiled(model: nn.Module | Callable, mode: str) -> nn.Module | Callable:
    """`model` (a module or a function) under torch.compile as `mode` (COMPILE_MODES) says,
    sharing its parameters: itself for "no"; for "regions" a module's repeated layers compiled once
    each (a function whole); one graph for "whole"."""
    if mode == "no":
        return model
    allow_recompiles()  # each model, objective and shape compiles anew: no silent eager fallback
    options = {"backend": COMPILE_BACKEND, "dynamic": False}
    if mode == "regions" and isinstance(model, nn.Module):
        from accelerate.utils import compile_regions

        return compile_regions(model, **options)
    return torch.compile(model, **options)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def cpu_bf16_is_fast() -> bool:
    """Whether this CPU has native bfloat16 matrix instructions (AVX512-BF16 or AMX), so that
    bf16 autocast speeds training up rather than emulating it slowly."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _make_accelerator(config: TrainConfig):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    cpu = config.device == "cpu" or not torch.cuda.is_available()
    precision = config.mixed_precision
    if precision == "auto":
        precision = "no" if cpu else "bf16"
    state = AcceleratorState._shared_state
    if state.get("_mixed_precision", precision) != precision:
        # accelerate keeps one precision per process and refuses another; a process that trains
        # twice (the cpu teacher pre-trained in bf16, then a student distilled in float32) starts
        # the state afresh, keeping the process group (PartialState)
        AcceleratorState._reset_state(reset_partial_state=False)
    return Accelerator(cpu=cpu, mixed_precision=precision)


def _frozen_except(
    model: nn.Module, trainable: Iterable[nn.Parameter] | None
) -> tuple[list[nn.Parameter], dict]:
    """Turn off gradients of every parameter not in `trainable`; return the trainable list and the
    old flags."""
    flags = {p: p.requires_grad for p in model.parameters()}
    if trainable is None:
        return [p for p in model.parameters() if p.requires_grad], flags
    chosen = list(trainable)
    ids = {id(p) for p in chosen}
    for p in model.parameters():
        p.requires_grad_(id(p) in ids)
    if not chosen:
        raise ValueError(
            "`trainable` is empty: pass the parameters to train, or None for all of them"
        )
    return chosen, flags


def train(
    model: nn.Module,
    loss_fn: LossFn,
    batches_fn: BatchesFn,
    config: TrainConfig,
    eval_fn: EvalFn | None = None,
    trainable: Iterable[nn.Parameter] | None = None,
) -> TrainResult:
    """Train `model` in place for config.steps optimiser steps and return what happened.

    `loss_fn(model, batch) -> (loss, metrics)` computes the loss of one micro-batch;
    `batches_fn(start)` yields global micro-batches from micro-batch index `start` on (so that a
    resumed run sees the same data); `eval_fn(model) -> metrics` validates; `trainable` restricts
    training to some parameters. With an out_dir, a finished run of the same config is reused and an
    interrupted one resumes. A first SIGTERM or SIGINT stops the run after the step under way, with
    a checkpoint, and raises TrainingStopped.
    Taught in chapter 6.
    """
    out_dir = Path(config.out_dir) if config.out_dir else None
    result = TrainResult(out_dir=str(out_dir) if out_dir else None)
    # run identity (hyena_lite.runs): what is trained is part of it, so no other model reuses a run
    context = {**config.context, "model": runs.architecture(model)}
    config = dataclasses.replace(config, context=context)
    log = read_log(out_dir, config) if out_dir else None
    if log and log["finished"] and (out_dir / "model.pt").exists():
        model.load_state_dict(runs.torch_load(out_dir / "model.pt"))
        return TrainResult(
            log["records"], log["evals"], finished=True, skipped=True, out_dir=str(out_dir)
        )

    accelerator = _make_accelerator(config)
    if accelerator.device.type == "cpu":
        keep_freed_memory()  # no page faults for every step's activations
    if config.batch_size % accelerator.num_processes:
        raise ValueError(
            f"a global micro-batch of batch_size={config.batch_size} sequences does not split over "
            f"{accelerator.num_processes} processes; use a batch size divisible by "
            f"{accelerator.num_processes}, or fewer processes"
        )
    params, flags = _frozen_except(model, trainable)
    loop = _Loop(model, loss_fn, batches_fn, config, eval_fn, params, accelerator, out_dir, result)
    try:
        with stop_requests() as requests, _output_lock(out_dir, accelerator.is_main_process):
            return loop.run(requests)
    finally:
        for p, flag in flags.items():
            p.requires_grad_(flag)


def _output_lock(out_dir: Path | None, main: bool):
    """The main process proves out_dir writable and holds its lock (hyena_lite.runs) for the run."""
    if out_dir is None or not main:
        return nullcontext()
    runs.ensure_writable_dir(out_dir)
    return runs.folder_lock(out_dir)


@dataclass
class _Loop:
    """One run of `train`: the model wrapped by accelerate, its optimiser and schedule, and the
    steps from the first (or the checkpoint's) to config.steps."""

    model: nn.Module
    loss_fn: LossFn
    batches_fn: BatchesFn
    config: TrainConfig
    eval_fn: EvalFn | None
    params: list[nn.Parameter]
    accelerator: Any
    out_dir: Path | None
    result: TrainResult

    def __post_init__(self) -> None:
        config, accelerator = self.config, self.accelerator
        self.optimizer = _optimizer(self.params, config)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, config)
        )
        self.checkpoint = self.out_dir / "checkpoint.pt" if self.out_dir else None
        self.rank, self.world = accelerator.process_index, accelerator.num_processes
        _seed_everything(config.seed + self.rank)  # independent dropout masks on each process
        self.start_step, self.wall_before = self._resume(), self.result.wall_seconds
        self.wrapped, self.optimizer = accelerator.prepare(self.model, self.optimizer)
        self.base = accelerator.unwrap_model(self.wrapped)
        # compiled here, not by accelerate's dynamo plugin: accelerate keeps its first
        # Accelerator's plugin for the whole process, so a later run could not turn it on
        self.wrapped = compiled(self.wrapped, config.compile)

    def _resume(self) -> int:
        """Load the newest good checkpoint of the last two, if any; the step it was written at,
        else 0."""
        state = runs.load_checkpoint(self.out_dir) if self.out_dir else None
        if state is None:
            return 0
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        set_rng_state(own_rng_state(state["rng"], self.rank, self.world))
        self.result.records, self.result.evals = state["records"], state["evals"]
        return state["step"]

    def _save_checkpoint(self, step: int) -> None:
        from accelerate.utils import gather_object

        rng = gather_object([rng_state()])  # every process's, for an exact resume of each
        if self.accelerator.is_main_process:
            state = {
                "model": self.base.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "rng": rng,
                "step": step,
                "records": self.result.records,
                "evals": self.result.evals,
            }
            # the log first (no checkpoint without its identity), then the checkpoint: atomic,
            # finite weights only, the previous one kept (hyena_lite.runs)
            write_log(self.out_dir / "log.json", self.config, self.result, stopped=None)
            runs.save_checkpoint(state, self.out_dir)
        self.clock.saved()
        self.accelerator.wait_for_everyone()

    def _evaluate(self, step: int) -> None:
        saved = rng_state()  # validation must not change the random numbers training sees next
        self.base.eval()  # the bare model: every process validates alike, no DDP collectives
        with torch.no_grad(), self.accelerator.autocast():
            metrics = self.eval_fn(self.base)
        self.base.train()
        set_rng_state(saved)
        self.result.evals.append({"step": step, **{k: float(v) for k, v in metrics.items()}})

    def _accumulate(
        self, step: int, batches: Iterator[Batch]
    ) -> tuple[torch.Tensor, dict[str, float], int]:
        """Forward and backward over the step's micro-batches: the mean loss, the mean metrics and
        the tokens of the global micro-batches."""
        config, accelerator = self.config, self.accelerator
        total, sums, tokens = torch.zeros((), device=accelerator.device), {}, 0
        for micro in range(config.grad_accum):
            try:
                batch = next(batches)
            except StopIteration:
                raise ValueError(
                    f"batches_fn ran out of batches at step {step}, micro-batch {micro}; "
                    f"give it more data or train for fewer steps"
                ) from None
            tokens += batch_tokens(batch)
            piece = shard(batch, self.rank, self.world)
            local = map_batch(piece, lambda t: t.to(accelerator.device))
            last = micro == config.grad_accum - 1
            sync = nullcontext() if last else accelerator.no_sync(self.wrapped)
            with sync, accelerator.autocast():
                loss, metrics = self.loss_fn(self.wrapped, local)
                accelerator.backward(loss / config.grad_accum)
            total += loss.detach().float() / config.grad_accum
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + float(v) / config.grad_accum
        return total, sums, tokens

    def _diverged(self, step: int, loss: float, bad_grads: list[str]) -> TrainingDiverged:
        """The error of a loss or gradients that became NaN or infinite, written to the log too."""
        config, out_dir = self.config, self.out_dir
        kept = (
            f"the last good checkpoint (step {checkpoint_step(self.checkpoint)}) is in {out_dir}"
            if self.checkpoint and self.checkpoint.exists()
            else "no checkpoint was saved"
        )
        what = (
            f"loss became {loss}"
            if not math.isfinite(loss)
            else f"gradients became non-finite ({', '.join(bad_grads[:3])})"
        )
        message = (
            f"{what} at step {step} ({config.tag or 'train'}); {kept}. "
            f"Lower the learning rate (now {config.lr}) or check the inputs, then run again."
        )
        if out_dir and self.accelerator.is_main_process:
            write_log(out_dir / "log.json", config, self.result, stopped=message)
        return TrainingDiverged(message)

    def run(self, stop_requests: list[int]) -> TrainResult:
        """Train from the start step to config.steps; stop cleanly after a step when asked."""
        config, accelerator, result = self.config, self.accelerator, self.result
        if self.out_dir and accelerator.is_main_process:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        tokens = int(result.records[-1]["tokens"]) if result.records else 0
        batches = iter(self.batches_fn(self.start_step * config.grad_accum))
        self.wrapped.train()
        clock = time.perf_counter()
        self.clock = runs.CheckpointClock(config.save_every, config.save_seconds)
        bar = tqdm(
            total=config.steps,
            initial=self.start_step,
            desc=config.tag or "train",
            leave=False,
            disable=not (config.progress and accelerator.is_main_process),
        )
        for step in range(self.start_step, config.steps):
            total, sums, new_tokens = self._accumulate(step, batches)
            tokens += new_tokens
            loss, sums, stop = mean_over_processes(accelerator, total, sums, bool(stop_requests))
            bad_grads = runs.nonfinite_gradients(self.base)  # a finite loss can hide NaN gradients
            if not math.isfinite(loss) or bad_grads:
                bar.close()
                raise self._diverged(step, loss, bad_grads)
            if config.max_grad_norm:
                accelerator.clip_grad_norm_(self.params, config.max_grad_norm)
            lr = self.scheduler.get_last_lr()[0]
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            wall = self.wall_before + time.perf_counter() - clock
            record = {"step": step + 1, "loss": loss, "lr": lr, "tokens": tokens}
            result.records.append({**record, "wall_seconds": wall, **sums})
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")
            done = step + 1
            every = config.eval_every and done % config.eval_every == 0
            if self.eval_fn and (done == config.steps or every):
                self._evaluate(done)
            stop = stop and done < config.steps
            due = self.clock.due(done)  # every save_every steps and save_seconds (hyena_lite.runs)
            if self.world > 1 and config.save_seconds:  # clocks differ: all save if any is due
                flag = torch.tensor(float(due), device=accelerator.device)
                due = bool(accelerator.reduce(flag, "sum").item())
            save = stop or due
            if self.checkpoint and done < config.steps and save:
                self._save_checkpoint(done)
            if stop:
                bar.close()
                kept = (
                    f"a checkpoint of step {done} is in {self.out_dir}: run again to resume"
                    if self.checkpoint
                    else "nothing was kept (no out_dir)"
                )
                raise TrainingStopped(
                    f"{config.tag or 'train'} stopped by a signal after step {done} of "
                    f"{config.steps}; {kept}",
                    signum=stop_requests[0] if stop_requests else signal.SIGINT,
                )
        bar.close()
        result.finished = True
        if self.out_dir and accelerator.is_main_process:
            runs.torch_save(self.base.state_dict(), self.out_dir / "model.pt")
            write_log(self.out_dir / "log.json", config, result, stopped=None)
            runs.remove_checkpoints(self.out_dir)
        accelerator.wait_for_everyone()
        accelerator.unwrap_model(self.wrapped, keep_fp32_wrapper=False)
        return result
