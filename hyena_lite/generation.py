"""Fast generation with a Hyena student: cached and recurrent (modal state-space) decoding, and
`generate`.

Decoding a long-convolution model naively re-runs every convolution for each new token. Here each
Hyena layer keeps a state instead:

- cached: the past inputs of each long convolution; the next output is one dot product per channel,
  O(L) time and memory, and equals the full forward pass;
- recurrent: each long filter is fitted by a modal state-space model (`hyena_lite.modal`) of order
r;
  the state is r complex numbers per channel, O(r) per token whatever the context, and the prompt is
  prefilled by FFT.

Attention layers of hybrid students (and teachers) keep their key-value cache.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from hyena_lite.fftconv import fftconv
from hyena_lite.losses import validation_loss
from hyena_lite.modal import ModalFilter, fit_modal, relative_error
from hyena_lite.operator import HyenaOperator
from hyena_lite.provenance import provenance
from hyena_lite.students import family_of, kv_cache_argument

MODES = ("full", "cached", "recurrent")


# ------------------------------------------------------------------------------------ one operator
class OperatorDecoder:
    """Decode one HyenaOperator step by step: the first call (prefill) takes the prompt, later calls
    new tokens.

    Keeps the last `short_filter_order` projected inputs for the short filter; what each long
    convolution keeps is the subclass's business (`_prefill_conv`, `_step_conv`). Call `reset()` to
    start a new sequence.
    """

    def __init__(self, op: HyenaOperator) -> None:
        self.op = op
        self.length = 0  # positions seen so far
        self.window: Tensor | None = (
            None  # [B, (N + 1) D, K] the last K in-projected inputs, oldest first
        )
        _, self.skips = op.long_filters(1)

    def reset(self) -> None:
        """Forget the sequence; the next call is a prefill."""
        self.length, self.window = 0, None

    def state_bytes(self) -> int:
        """Bytes of the decoding state now held (short filter window and long convolution state)."""
        return 0 if self.window is None else self.window.numel() * self.window.element_size()

    def _tensors(self) -> list[Tensor]:
        """The state tensors that a step updates in place."""
        return [self.window]

    def snapshot(self) -> list[Tensor]:
        """Copies of the state, to undo warm-up steps (see `restore`)."""
        return [t.clone() for t in self._tensors()]

    def restore(self, saved: list[Tensor]) -> None:
        """Put back a snapshot, in place (the tensors keep their addresses, as a captured CUDA graph
        needs)."""
        for t, old in zip(self._tensors(), saved):
            t.copy_(old)

    def __call__(self, u: Tensor) -> Tensor:
        """The operator's output [B, T, D] for the next T positions of u [B, T, D]."""
        with torch.no_grad():
            if self.length == 0:
                return self._prefill(u)
            return torch.cat([self._step(u[:, i]) for i in range(u.shape[1])], dim=1)

    def _prefill(self, u: Tensor) -> Tensor:
        op, length = self.op, u.shape[1]
        wide = torch.promote_types(u.dtype, torch.float32)
        p = op.in_proj(u).transpose(1, 2).to(wide)  # [B, W, T]
        taps = op.short_filter.weight.shape[-1]
        self.window = F.pad(p, (taps - 1, 0))[..., -taps:].contiguous()
        z = (
            F.conv1d(
                p,
                op.short_filter.weight.to(wide),
                op.short_filter.bias.to(wide),
                padding=taps - 1,
                groups=p.shape[1],
            )[..., :length]
            .to(u.dtype)
            .to(wide)
        )
        *gates, y = z.split(op.d_model, dim=1)
        for n, x in enumerate(gates):
            y = x * self._prefill_conv(n, y)
        self.length = length
        return op.out_proj(y.to(u.dtype).transpose(1, 2))

    def _step(self, u: Tensor) -> Tensor:
        """One position: u [B, D] -> [B, 1, D]."""
        op = self.op
        wide = self.window.dtype
        p = op.in_proj(u).to(wide)
        self.window.copy_(
            torch.cat([self.window[..., 1:], p[..., None]], dim=-1)
        )  # in place: CUDA-graph safe
        z = (self.window * op.short_filter.weight[:, 0].to(wide)).sum(-1) + op.short_filter.bias.to(
            wide
        )
        *gates, y = z.to(u.dtype).to(wide).split(op.d_model, dim=1)
        for n, x in enumerate(gates):
            y = x * self._step_conv(n, y)
        self.length += 1
        return op.out_proj(y.to(u.dtype))[:, None]

    def _prefill_conv(self, n: int, y: Tensor) -> Tensor:
        """Stage n's long convolution (skip included) over the prompt, y [B, D, T] -> [B, D, T];
        keep its state."""
        raise NotImplementedError

    def _step_conv(self, n: int, y: Tensor) -> Tensor:
        """Stage n's long convolution at the next position, y [B, D] -> [B, D]; update its state."""
        raise NotImplementedError


class CachedDecoder(OperatorDecoder):
    """Exact decoding: keep each long convolution's input history; the next output is a dot product
    with the filter.

    O(L) time and memory per channel per token. The history grows (doubling) up to the filter length
    l_max.
    """

    def __init__(self, op: HyenaOperator, capacity: int | None = None) -> None:
        super().__init__(op)
        k, _ = op.long_filters(op.l_max)
        self.flipped = k.flip(
            -1
        ).contiguous()  # [N, D, l_max]: flipped[n, d, l_max - 1 - s] = h^n_s
        self.capacity = capacity or 0
        self.history: Tensor | None = None  # [N, D, B, capacity] inputs of each long convolution

    def reset(self) -> None:
        super().reset()
        self.history = None

    def state_bytes(self) -> int:
        held = 0 if self.history is None else self.history.numel() * self.history.element_size()
        return super().state_bytes() + held

    def _reserve(self, needed: int, batch: int, like: Tensor) -> None:
        l_max = self.op.l_max
        if needed > l_max:
            raise ValueError(
                f"position {needed} exceeds the filter length {l_max} of this Hyena operator: cached "
                f"decoding reaches l_max tokens; convert the student with a larger l_max, or decode "
                f"with mode='recurrent'"
            )
        if self.history is not None and self.history.shape[-1] >= needed:
            return
        size = min(
            l_max,
            max(needed, self.capacity, 2 * (0 if self.history is None else self.history.shape[-1])),
        )
        grown = torch.zeros(
            self.op.order, self.op.d_model, batch, size, dtype=like.dtype, device=like.device
        )
        if self.history is not None:
            grown[..., : self.history.shape[-1]] = self.history
        self.history = grown

    def _prefill_conv(self, n: int, y: Tensor) -> Tensor:
        length = y.shape[-1]
        self._reserve(length, y.shape[0], y)
        self.history[n, :, :, :length] = y.transpose(0, 1)
        k = self.flipped[n, :, self.op.l_max - length :].flip(-1)
        return fftconv(y, k, self.skips[n])

    def _step_conv(self, n: int, y: Tensor) -> Tensor:
        t = self.length
        self._reserve(t + 1, y.shape[0], y)
        self.history[n, :, :, t] = y.transpose(0, 1)
        past = self.history[n, :, :, : t + 1]  # [D, B, t + 1]
        taps = self.flipped[n, :, self.op.l_max - 1 - t :, None].to(y.dtype)  # [D, t + 1, 1]
        return torch.bmm(past, taps)[..., 0].transpose(0, 1) + self.skips[n].to(y.dtype) * y


class RecurrentDecoder(OperatorDecoder):
    """Decoding with modal state-space models of the long filters: O(r) time and memory per channel
    per token.

    `fit` holds the order * d_model filters of the operator (stage-major, as `long_filters` lays
    them out). The prompt's outputs come from the fitted filters by FFT; its final state from a
    Vandermonde product.
    """

    def __init__(self, op: HyenaOperator, fit: ModalFilter, chunk: int = 2048) -> None:
        super().__init__(op)
        device = op.out_proj.weight.device
        fit = fit.to(device=device, dtype=torch.float32)
        N, D = op.order, op.d_model
        self.fit = fit
        self.poles = fit.poles.view(N, D, -1)
        self.residues = fit.residues.view(N, D, -1)
        self.fir = fit.fir.view(N, D, -1).flip(-1).contiguous()  # reversed: fir[..., -1] is h_0
        self.chunk = chunk
        self.state: Tensor | None = None  # [N, B, D, modes] complex
        self.recent: Tensor | None = (
            None  # [N, B, D, F] the last F inputs of each convolution, oldest first
        )

    def reset(self) -> None:
        super().reset()
        self.state = self.recent = None

    def state_bytes(self) -> int:
        held = sum(t.numel() * t.element_size() for t in (self.state, self.recent) if t is not None)
        return super().state_bytes() + held

    def _tensors(self) -> list[Tensor]:
        return [self.window, self.state, self.recent]

    def _prefill_conv(self, n: int, y: Tensor) -> Tensor:
        batch, D, length = y.shape
        head = self.fir.shape[-1]
        if n == 0:
            self.state = torch.zeros(
                self.op.order,
                batch,
                D,
                self.poles.shape[-1],
                dtype=self.poles.dtype,
                device=y.device,
            )
            self.recent = torch.zeros(self.op.order, batch, D, head, dtype=y.dtype, device=y.device)
        keep = min(head, length)
        self.recent[n, ..., head - keep :] = y[..., length - keep :]
        # state after the prompt: sum over j <= T - F of poles^(T - F - j) y_j
        log_pole = torch.complex(
            self.poles[n].abs().clamp_min(1e-30).log(), self.poles[n].angle()
        )  # [D, m]
        last = length - head  # the newest input that has left the FIR head
        for start in range(0, last + 1, self.chunk):
            stop = min(start + self.chunk, last + 1)
            powers = torch.exp(
                log_pole[..., None] * (last - torch.arange(start, stop, device=y.device))
            )
            self.state[n] += torch.einsum(
                "dmj,bdj->bdm", powers, y[..., start:stop].to(powers.dtype)
            )
        k = ModalFilter(
            self.fit.poles.view(self.op.order, D, -1)[n],
            self.fit.residues.view(self.op.order, D, -1)[n],
            self.fit.fir.view(self.op.order, D, -1)[n],
            self.fit.order,
        ).taps(length)
        return fftconv(y, k, self.skips[n])

    def _step_conv(self, n: int, y: Tensor) -> Tensor:
        recent = torch.cat([self.recent[n, ..., 1:], y[..., None]], dim=-1)
        self.recent[n] = recent
        out = (
            (recent * self.fir[n]).sum(-1)
            + self.skips[n] * y
            + (self.residues[n] * self.state[n]).sum(-1).real
        )
        self.state[n] = self.poles[n] * self.state[n] + recent[..., :1]
        return out


# ------------------------------------------------------------------------------------ fitting a
# student
def hyena_operators(model: nn.Module) -> dict[int, HyenaOperator]:
    """The Hyena operator of each Hyena layer of a student, by layer index (empty for a teacher)."""
    layers = getattr(model.config, "hyena_layers", None) or []
    family = family_of(model)
    return {i: getattr(family.layers(model)[i], family.attention).operator for i in layers}


@dataclass
class StudentFit:
    """Modal fits of every Hyena layer's long filters, and how well they fit."""

    fits: dict[int, ModalFilter]
    rows: list[dict[str, Any]]  # per layer: layer, order, modes, fir, mean/max relative error


def fit_student(
    model: nn.Module,
    order: int = 16,
    fir: int = 2,
    size: int | None = None,
    refine_steps: int = 0,
    lr: float = 1e-3,
    length: int | None = None,
    progress: bool = True,
) -> StudentFit:
    """Fit each Hyena layer's filters with modal models of real order `order`; report the error per
    layer.

    The fit covers the first `length` taps (default: all l_max), the longest context it is meant
    for; see `hyena_lite.modal.fit_modal` for fir, size, refine_steps and lr.
    """
    fits, rows = {}, []
    operators = hyena_operators(model)
    if not operators:
        raise ValueError(
            f"{type(model).__name__} has no Hyena layers to fit: recurrent decoding is for Hyena students"
        )
    for layer, op in tqdm(operators.items(), desc="modal fit", disable=not progress, leave=False):
        taps = min(length or op.l_max, op.l_max)
        with torch.no_grad():
            k, _ = op.long_filters(taps)
        h = k.reshape(-1, taps).detach().double()
        fit = fit_modal(h, order, fir=fir, size=size, refine_steps=refine_steps, lr=lr)
        error = relative_error(h, fit)
        fits[layer] = fit
        rows.append(
            {
                "layer": layer,
                "order": order,
                "modes": int(fit.poles.shape[-1]),
                "fir": fir,
                "mean_error": float(error.mean()),
                "max_error": float(error.max()),
            }
        )
    return StudentFit(fits, rows)


# ------------------------------------------------------------------------------------ a whole model
class _DecodingMixer(nn.Module):
    """Stands in for a HyenaMixer while decoding: the same call, answered by an OperatorDecoder."""

    def __init__(self, mixer: nn.Module, decoder: OperatorDecoder) -> None:
        super().__init__()
        self.mixer = mixer
        self.decoder = decoder

    def forward(self, *args: Any, **kwargs: Any) -> tuple[Tensor, None]:
        hidden = args[0] if args else kwargs["hidden_states"]
        return self.decoder(hidden), None


def _new_cache(model: nn.Module, hyena_layers: list[int]) -> Any:
    """A key-value cache for the attention layers; Hyena layers get placeholders so that masks size
    correctly."""
    from transformers import DynamicCache

    if not hyena_layers:
        return DynamicCache(config=model.config)
    try:
        from transformers.cache_utils import Cache, DummyLayer, DynamicLayer
    except ImportError:  # older transformers 5.x: no placeholder layers
        return DynamicCache(config=model.config)
    n = model.config.num_hidden_layers
    return Cache(layers=[DummyLayer() if i in hyena_layers else DynamicLayer() for i in range(n)])


class Decoder:
    """Decode a causal LM (teacher or student) token by token: `prefill(ids)`, then `step(tokens)`.

    mode 'full' re-runs the whole sequence per token; 'cached' and 'recurrent' decode Hyena layers
    with `CachedDecoder` / `RecurrentDecoder` (attention layers use their key-value cache; a teacher
    in 'cached' mode is plain KV-cache decoding). Use it as a context manager: it swaps the Hyena
    mixers on entry.

    cuda_graph=True (recurrent mode, CUDA, a student without attention layers) captures one decoding
    step in a CUDA graph after the prefill and replays it: the state is fixed in size and updated in
    place, so a step is one graph launch instead of hundreds of kernel launches.
    """

    def __init__(
        self,
        model: nn.Module,
        mode: str = "cached",
        fits: dict[int, ModalFilter] | None = None,
        order: int = 16,
        capacity: int | None = None,
        cuda_graph: bool = False,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown decoding mode {mode!r}; choose one of {', '.join(MODES)}")
        self.model, self.mode = model, mode
        self.family = family_of(model)
        self.operators = hyena_operators(model)
        if mode == "recurrent" and not self.operators:
            raise ValueError(
                "mode='recurrent' needs a Hyena student; decode a transformer with mode='cached' (KV cache)"
            )
        if mode == "recurrent" and fits is None:
            fits = fit_student(model, order).fits
        if mode == "cached":
            self.decoders = {i: CachedDecoder(op, capacity) for i, op in self.operators.items()}
        elif mode == "recurrent":
            missing = sorted(set(self.operators) - set(fits))
            if missing:
                raise ValueError(
                    f"no modal fit for Hyena layers {missing}; fit them with fit_student(model)"
                )
            self.decoders = {i: RecurrentDecoder(op, fits[i]) for i, op in self.operators.items()}
        else:
            self.decoders = {}
        self.cache_name = kv_cache_argument(model)
        self.ids: Tensor | None = None
        self.cache: Any = None
        self.position = 0
        self._swapped: list[tuple[nn.Module, nn.Module]] = []
        self.cuda_graph = cuda_graph
        if cuda_graph and (
            mode != "recurrent" or len(self.operators) < model.config.num_hidden_layers
        ):
            raise ValueError(
                "cuda_graph=True needs mode='recurrent' and a student with no attention layers "
                "(a growing key-value cache cannot be captured)"
            )
        self._graph: Any = None
        self._static: dict[str, Tensor] = {}

    def __enter__(self) -> Decoder:
        for i, decoder in self.decoders.items():
            layer = self.family.layers(self.model)[i]
            mixer = getattr(layer, self.family.attention)
            setattr(layer, self.family.attention, _DecodingMixer(mixer, decoder))
            self._swapped.append((layer, mixer))
        return self

    def __exit__(self, *_exc: Any) -> None:
        for layer, mixer in self._swapped:
            setattr(layer, self.family.attention, mixer)
        self._swapped = []

    def state_bytes(self) -> int:
        """Bytes held for the sequence: Hyena decoding states plus the attention layers' key-value
        cache."""
        held = sum(d.state_bytes() for d in self.decoders.values())
        if self.mode == "full" and self.ids is not None:
            held += self.ids.numel() * self.ids.element_size()
        if self.cache is not None:
            for layer in getattr(self.cache, "layers", []):
                for t in (getattr(layer, "keys", None), getattr(layer, "values", None)):
                    held += t.numel() * t.element_size() if isinstance(t, Tensor) else 0
        return held

    def _forward(self, ids: Tensor, all_logits: bool) -> Tensor:
        kwargs: dict[str, Any] = {} if all_logits else {"logits_to_keep": 1}
        if self.mode == "full":
            return self.model(ids, use_cache=False, **kwargs).logits
        positions = torch.arange(self.position, self.position + ids.shape[1], device=ids.device)
        kwargs["position_ids"] = positions[None].expand(ids.shape[0], -1)
        if (
            len(self.operators) < self.model.config.num_hidden_layers
        ):  # attention layers: key-value cache
            out = self.model(ids, use_cache=True, **{self.cache_name: self.cache}, **kwargs)
            self.cache = out["cache"] if "cache" in out else out.get("past_key_values")
        else:
            out = self.model(ids, use_cache=False, **kwargs)
        self.position += ids.shape[1]
        return out.logits

    def prefill(self, ids: Tensor, all_logits: bool = False) -> Tensor:
        """Start a new sequence with the prompt ids [B, T]; logits of its last position [B, V] (all:
        [B, T, V])."""
        if self.mode != "full" and not self._swapped and self.decoders:
            raise RuntimeError(
                "use the Decoder as a context manager: `with Decoder(model, mode) as decoder: ...`"
            )
        for decoder in self.decoders.values():
            decoder.reset()
        self.position, self.ids, self._graph = 0, ids, None
        has_attention = len(self.operators) < self.model.config.num_hidden_layers
        self.cache = (
            _new_cache(self.model, list(self.operators))
            if self.mode != "full" and has_attention
            else None
        )
        with torch.no_grad():
            logits = self._forward(ids, all_logits)
        return logits if all_logits else logits[:, -1]

    def step(self, tokens: Tensor) -> Tensor:
        """Feed the next tokens [B, 1] (or [B]); logits of the position after them, [B, V]."""
        tokens = tokens.view(-1, 1)
        with torch.no_grad():
            if self.cuda_graph and tokens.is_cuda:
                return self._graph_step(tokens)
            if self.mode == "full":
                self.ids = torch.cat([self.ids, tokens], dim=1)
                return self._forward(self.ids, False)[:, -1]
            return self._forward(tokens, False)[:, -1]

    def _static_forward(self) -> Tensor:
        """One step from the static buffers (a 4-D mask skips the mask building, which would
        synchronise)."""
        st = self._static
        out = self.model(
            st["tokens"],
            use_cache=False,
            position_ids=st["positions"],
            attention_mask=st["mask"],
            logits_to_keep=1,
        )
        return out.logits[:, -1]

    def _graph_step(self, tokens: Tensor) -> Tensor:
        """A decoding step replayed from a CUDA graph (captured at the first step after a
        prefill)."""
        if self._graph is None:
            batch, device = tokens.shape[0], tokens.device
            self._static = {
                "tokens": tokens.clone(),
                "positions": torch.full((batch, 1), self.position, dtype=torch.long, device=device),
                "mask": torch.ones(batch, 1, 1, 1, dtype=torch.bool, device=device),
            }
            saved = [d.snapshot() for d in self.decoders.values()]
            stream = torch.cuda.Stream(device)
            stream.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(
                stream
            ):  # warm-up outside the graph, as CUDA graph capture requires
                for _ in range(2):
                    self._static_forward()
            torch.cuda.current_stream(device).wait_stream(stream)
            for decoder, state in zip(self.decoders.values(), saved):
                decoder.restore(state)
            self._graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self._graph):
                self._static["logits"] = self._static_forward()
        self._static["tokens"].copy_(tokens)
        self._static["positions"].fill_(self.position)
        self._graph.replay()
        self.position += 1
        return self._static["logits"].clone()


# ------------------------------------------------------------------------------------ quality
def perplexity(
    model: nn.Module,
    windows: Tensor,
    fits: dict[int, ModalFilter] | None = None,
    batch_size: int = 8,
) -> float:
    """Perplexity over windows [N, T] of the convolutional student, or with `fits` of its recurrent
    version.

    The recurrent version's logits come from `RecurrentDecoder`'s prefill, i.e. the convolution with
    the fitted filters, which is what token-by-token recurrent decoding computes (the tests check
    that they agree).
    """
    with Decoder(model, "recurrent" if fits else "full", fits=fits) as decoder:
        prefill = partial(decoder.prefill, all_logits=True)
        return math.exp(validation_loss(model, windows, batch_size, logits=prefill))


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
    from hyena_lite.models import convert
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
    )

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
        "student": f"GPT-2 shape, {layers} layers, width {width}, every attention -> Hyena order 2, l_max {seq_len}",
        "training": f"cross-entropy from scratch on the offline corpus: {steps} steps of {batch_size} x {seq_len} "
        f"tokens, lr {lr}",
        "final_train_loss": result.records[-1].get("loss") if result.records else None,
    }
    return student.eval(), eval_windows(valid, seq_len, eval_tokens), info


# ------------------------------------------------------------------------------------ generate
@dataclass
class Generation:
    """What `generate` produced: the new tokens [B, N] and how long it took."""

    tokens: Tensor
    prefill_s: float
    decode_s: float

    @property
    def tokens_per_s(self) -> float:
        """New tokens per second of decoding (the prompt's prefill excluded), summed over the
        batch."""
        steps = self.tokens.shape[1] - 1  # the first new token comes from the prefill
        return (
            self.tokens.shape[0] * steps / self.decode_s
            if steps > 0 and self.decode_s > 0
            else float("nan")
        )


def _pick(
    logits: Tensor, temperature: float, top_k: int | None, generator: torch.Generator | None
) -> Tensor:
    """Greedy (temperature 0) or sampled next tokens [B, 1] from logits [B, V]."""
    if temperature <= 0:
        return logits.argmax(-1, keepdim=True)
    logits = logits.float() / temperature
    if top_k:
        threshold = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < threshold, float("-inf"))
    return torch.multinomial(logits.softmax(-1), 1, generator=generator)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def generate(
    model: nn.Module,
    input_ids: Tensor,
    max_new_tokens: int = 32,
    mode: str = "recurrent",
    order: int = 16,
    fits: dict[int, ModalFilter] | None = None,
    temperature: float = 0.0,
    top_k: int | None = None,
    seed: int | None = None,
) -> Generation:
    """Continue input_ids [B, T] by max_new_tokens tokens, decoding Hyena layers in `mode`
    (full|cached|recurrent).

    Greedy unless temperature > 0 (then sampled, optionally from the top_k, with `seed`). A
    recurrent decode fits the modal models first (order `order`) unless `fits` (from `fit_student`)
    are given.
    """
    if input_ids.dim() != 2 or input_ids.shape[1] < 1:
        raise ValueError(
            f"input_ids must have shape [batch, length >= 1], got {tuple(input_ids.shape)}"
        )
    limit = getattr(model.config, "max_position_embeddings", None) or getattr(
        model.config, "n_positions", None
    )
    total = input_ids.shape[1] + max_new_tokens
    if limit and total > limit and getattr(model.config, "model_type", "").endswith("gpt2"):
        raise ValueError(
            f"prompt plus new tokens ({total}) exceed this GPT-2's {limit} learned positions; "
            f"ask for fewer new tokens or a shorter prompt"
        )
    generator = None if seed is None else torch.Generator(input_ids.device).manual_seed(seed)
    device = input_ids.device
    new = []
    with Decoder(model, mode, fits=fits, order=order, capacity=total) as decoder:
        _sync(device)
        start = time.perf_counter()
        logits = decoder.prefill(input_ids)
        new.append(_pick(logits, temperature, top_k, generator))
        _sync(device)
        prefill_s = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(max_new_tokens - 1):
            logits = decoder.step(new[-1])
            new.append(_pick(logits, temperature, top_k, generator))
        _sync(device)
        decode_s = time.perf_counter() - start
    return Generation(torch.cat(new, dim=1), prefill_s, decode_s)


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
            _sync(device)
            start = time.perf_counter()
            logits = decoder.step(token)
            _sync(device)
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
    `context`)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from hyena_lite.models import convert

    torch.manual_seed(0)
    config = GPT2Config(
        n_positions=context,
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=n_head,
        vocab_size=vocab,
        bos_token_id=0,
        eos_token_id=0,
    )
    teacher = GPT2LMHeadModel(config).to(device=device, dtype=dtype).eval()
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
    are left out. `on_row(results)` is called with the results so far after each row (to save
    partial results).
    """
    longest = max(contexts) + warmup + new_tokens + 1
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
        "model": f"GPT-2 shapes: {n_layer} layers, width {n_embd}, {n_head} heads, vocabulary {vocab}, random weights, "
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
        help="full: re-run the sequence per token; cached: exact O(L) state; recurrent: modal O(r) state",
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
        "--benchmark", metavar="JSON", help="time decoding and write the results to this JSON file"
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
        metavar="JSON",
        help="measure and write the results to this JSON file; on "
        "--model if given, else on a small student trained here briefly from scratch",
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
    import json
    import shlex
    import sys
    from pathlib import Path

    meta = provenance(shlex.join(["python", "-m", "hyena_lite", "generate", *sys.argv[2:]]))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save(results: dict[str, Any]) -> None:
        out.write_text(json.dumps({**meta, **results}, indent=1) + "\n")

    return save


def _quality_main(args: argparse.Namespace, device: torch.device) -> int:
    """Perplexity of the recurrent vs the convolutional student per order, on a saved or a briefly
    trained student."""
    save = _saver(args.quality)
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
            f"order {row['order']:>3} ({row['modes']} modes): perplexity conv {row['conv_ppl']:.3f} recurrent "
            f"{row['recurrent_ppl']:.3f} ({100 * row['relative_gap']:+.3f}%), filter error mean "
            f"{row['fit_mean_error']:.2e} max {row['fit_max_error']:.2e}"
        )
    print(f"wrote {args.quality}")
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
    save = _saver(args.benchmark)

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
    print(f"wrote {args.benchmark}")
    return 0


def cli_main(args: argparse.Namespace) -> int:
    """Continue a prompt and print the continuation, fit errors and tokens/s; or run --benchmark or
    --quality."""
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.benchmark:
        return _benchmark_main(args, device)
    if args.quality:
        return _quality_main(args, device)
    if not args.model or args.prompt is None:
        raise SystemExit(
            "give --model DIR and --prompt TEXT (or --benchmark JSON / --quality JSON)"
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
                f"layer {row['layer']}: order {row['order']} ({row['modes']} complex modes), filter error "
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
