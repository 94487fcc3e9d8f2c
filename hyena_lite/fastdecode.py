"""Decoding at its best on both sides: a teacher's one-token step over a static key-value cache,
and a Hyena student's whole recurrent step (all layers, MLPs, head), each recorded as one CUDA graph
with static buffers, optionally compiled first by torch.compile (which fuses the element-wise work).

The student's step (`ModalStep`) is the recurrence of `hyena_lite.decoding.RecurrentDecoder` written
in real arithmetic on static buffers (complex numbers as real and imaginary parts, which
torch.compile fuses; it does not fuse complex tensors), and both decoders count the bytes a step
must read (`read_bytes`), from which a measured bandwidth gives the step's floor. The plain
decoders in `hyena_lite.generation` stay the reference; scripts/speed_h200.py measures both.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hyena_lite.cudagraph import record
from hyena_lite.decoding import RecurrentDecoder, hyena_operators
from hyena_lite.modal import ModalFilter
from hyena_lite.operator import HyenaOperator
from hyena_lite.recompiles import allow_recompiles
from hyena_lite.students import family_of, kv_cache_argument

# Positions a benchmark may step past the prompt before it rewinds (see hyena_lite.timing).
STEP_HEADROOM = 256


def cache_length(context: int) -> int:
    """The static cache length for timing steps after a prompt of `context` tokens: room for
    STEP_HEADROOM more, rounded up to a multiple of 64 (aligned rows for the attention kernels)."""
    return -(-(context + STEP_HEADROOM) // 64) * 64


# How a decoding step is compiled: "default" is inductor as it comes; "tuned" is gpt-fast's setting,
# coordinate-descent tuning of every generated kernel, with each one-row matrix product (biased or
# not) lowered to a product-and-sum that inductor fuses and tunes like any reduction; "autotune" is
# "tuned" plus inductor's search over its matrix-product kernels (slower to compile).
COMPILE_SETTINGS = ("default", "tuned", "autotune")


def _one_row_addmm(
    bias: Tensor, mat1: Tensor, mat2: Tensor, *, beta: float = 1, alpha: float = 1
) -> Tensor:
    """addmm of a single row as a product and a sum in float32 (a reduction inductor can tune), or
    NotImplemented (inductor's own lowering) for more rows."""
    from torch.fx.experimental.symbolic_shapes import statically_known_true

    if not statically_known_true(mat1.shape[0] == 1):
        return NotImplemented
    out = (mat1.float().unsqueeze(2) * mat2.float().unsqueeze(0)).sum(dim=1)
    return (alpha * out + beta * bias.float()).to(mat1.dtype)


def _tuned_backend(autotune: bool) -> Callable[..., Any]:
    """A torch.compile backend: inductor with coordinate-descent tuning, one-row matrix products
    as reductions (inductor's own decomposition for mm, `_one_row_addmm` for addmm), and its
    matrix-product search if `autotune`."""
    from torch._inductor.compile_fx import compile_fx
    from torch._inductor.decomposition import select_decomp_table

    patches = {"coordinate_descent_tuning": True, "max_autotune": autotune}
    decompositions = {**select_decomp_table(), torch.ops.aten.addmm.default: _one_row_addmm}

    def backend(graph: torch.fx.GraphModule, inputs: list[Tensor]) -> Callable[..., Any]:
        return compile_fx(graph, inputs, config_patches=patches, decompositions=decompositions)

    return backend


def compile_setting(compile: bool | str) -> str | None:
    """The name in COMPILE_SETTINGS that `compile` asks for (True: "default"), or None (False)."""
    if compile is False:
        return None
    setting = "default" if compile is True else compile
    if setting not in COMPILE_SETTINGS:
        raise ValueError(
            f"compile must be True, False or one of {', '.join(COMPILE_SETTINGS)}; got {compile!r}"
        )
    return setting


def _compiled(fn: Callable[[], Tensor], compile: bool | str) -> Callable[[], Tensor]:
    """fn compiled by torch.compile for static shapes with the setting `compile` names (inductor
    fuses the element-wise work; see COMPILE_SETTINGS), or fn itself (False)."""
    setting = compile_setting(compile)
    if setting is None:
        return fn
    allow_recompiles()
    if setting == "default":
        return torch.compile(fn, dynamic=False)
    return torch.compile(fn, dynamic=False, backend=_tuned_backend(setting == "autotune"))


def _tensor_bytes(tensors: Iterator[Tensor]) -> int:
    """Bytes of the distinct storages among tensors (a tied weight counts once)."""
    seen, total = set(), 0
    for t in tensors:
        if t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            total += t.numel() * t.element_size()
    return total


def weight_bytes(model: nn.Module, skip: Callable[[str], bool] = lambda name: False) -> int:
    """Bytes of the weights a one-token step reads: every parameter except input embedding tables
    (a step reads one row of each) not shared with the output head, and except those `skip`
    names."""
    head = model.get_output_embeddings()
    tied = None if head is None else head.weight.data_ptr()
    tables = {
        id(m.weight)
        for m in model.modules()
        if isinstance(m, nn.Embedding) and m.weight.data_ptr() != tied
    }
    return _tensor_bytes(
        p for name, p in model.named_parameters() if id(p) not in tables and not skip(name)
    )


@contextlib.contextmanager
def _swapped(model: nn.Module, attribute: str, modules: dict[int, nn.Module]) -> Iterator[None]:
    """Put `modules` (layer index -> module) in the place of those layers' `attribute` (their
    mixer, their MLP) for a while."""
    layers = family_of(model).layers(model)
    saved = {i: getattr(layers[i], attribute) for i in modules}
    try:
        for i, module in modules.items():
            setattr(layers[i], attribute, module)
        yield
    finally:
        for i, module in saved.items():
            setattr(layers[i], attribute, module)


@contextlib.contextmanager
def _step_modules(
    model: nn.Module, mixers: dict[int, nn.Module], mlps: dict[int, nn.Module]
) -> Iterator[None]:
    """The step's stand-ins in place: `mixers` for those layers' mixers, `mlps` for their MLPs."""
    with _swapped(model, family_of(model).attention, mixers), _swapped(model, "mlp", mlps):
        yield


# ------------------------------------------------------------------------------------ the student
# who runs a ModalStep (see its docstring)
STEP_KERNELS = ("torch", "triton", "triton_in_proj", "triton_fused")


def _check_triton(device: torch.device) -> None:
    """Refuse a Triton step (mixer or MLP) where it cannot run, saying why."""
    if importlib.util.find_spec("triton") is None:
        raise ImportError(
            "the Triton step needs the triton package (CUDA builds of PyTorch ship it; elsewhere "
            "`pip install triton`)"
        )
    if device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        raise ValueError(
            f"the Triton step runs on a CUDA GPU, the model is on {device}; on a CPU run it in "
            "Triton's interpreter (TRITON_INTERPRET=1, set before triton is imported)"
        )


# who runs each block's MLP at a step: the model's own module, one Triton kernel, or one Triton
# kernel that also does the block's residual add and norm, in a step written block by block
# (hyena_lite.block_steps)
MLP_KERNELS = ("torch", "triton", "triton_blocks")


def _mlp_steps(model: nn.Module, mlp_kernel: str) -> dict[int, nn.Module]:
    """The stand-ins for every layer's MLP that `mlp_kernel` asks for (none for "torch", nor for
    "triton_blocks", whose step does not go through the model's forward)."""
    if mlp_kernel not in MLP_KERNELS:
        raise ValueError(f"mlp_kernel must be one of {MLP_KERNELS}, got {mlp_kernel!r}")
    if mlp_kernel == "torch":
        return {}
    _check_triton(next(model.parameters()).device)
    if mlp_kernel == "triton_blocks":
        return {}
    from hyena_lite.mlp_kernel import MLPStep

    layers = family_of(model).layers(model)
    return {i: MLPStep(getattr(layer, "mlp", None)) for i, layer in enumerate(layers)}


def _dependent_launches(pdl: bool | None, device: torch.device) -> bool:
    """Whether the block-by-block step launches its Triton kernels as programmatic dependents:
    `pdl`, or by default where the GPU has them (compute capability 9.0, Hopper, and later)."""
    has = device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 9
    if pdl and not has:
        raise ValueError(
            f"pdl=True needs a CUDA GPU of compute capability 9.0 or later; the model is on "
            f"{device}: pass pdl=False"
        )
    return has if pdl is None else pdl


def _shifted(buffer: Tensor, newest: Tensor) -> Tensor:
    """buffer [..., K] moved one place to the left along its last axis, with newest [...] in the
    last place; written as a sum of two padded tensors, which inductor generates as element-wise
    work (a cat there costs a kernel for each of its inputs)."""
    taps = buffer.shape[-1]
    return F.pad(buffer[..., 1:], (0, 1)) + F.pad(newest[..., None], (taps - 1, 0))


class ModalStep(nn.Module):
    """One Hyena operator's recurrent decoding step on static buffers: u [B, 1, D] -> [B, 1, D].

    The same recurrence as `RecurrentDecoder._step` (short filter over a window of K projected
    inputs, then per stage an FIR head of F taps, the skip and a modal state of m complex modes),
    with every state held in float32 buffers of fixed address and complex numbers split into real
    and imaginary parts. `load(decoder)` takes the state a prefilled RecurrentDecoder left.

    Arranged for few fused kernels (torch.compile): stage n's output is c_n + g_n * y_n, where c_n
    (the FIR taps over the older inputs plus the modes' output) depends only on the old state, so
    one batched reduction gives it for every stage, and g_n (the newest FIR tap plus the skip) is a
    constant; the gating chain y_{n+1} = z_n * (c_n + g_n * y_n), with the short filter's z_n, is
    then element-wise on [B, D], and every state is written back at the end. (Updating the modes
    before the chain, from the old buffer, would save one more kernel on the GPU but trips a bug
    of inductor's C++ backend in torch 2.13: KeyError in its outer-loop fusion.)

    `kernel` picks who runs the step: "torch" (this code, which torch.compile fuses), "triton"
    (everything between the two projections as one Triton kernel, `hyena_lite.modal_kernel`) or
    "triton_in_proj" (the input projection inside that kernel too) or "triton_fused" (both
    projections inside it: the whole mixer one launch): the Triton ones on a CUDA GPU, or on a CPU
    in Triton's interpreter (TRITON_INTERPRET=1 before triton is imported). `block_channels`: the
    Triton kernel's channels per program (default: `modal_kernel.channels_per_program`).
    """

    def __init__(
        self,
        op: HyenaOperator,
        fit: ModalFilter,
        batch: int,
        kernel: str = "torch",
        block_channels: int | None = None,
    ) -> None:
        super().__init__()
        device = op.out_proj.weight.device
        if kernel not in STEP_KERNELS:
            raise ValueError(f"kernel must be one of {STEP_KERNELS}, got {kernel!r}")
        self.kernel, self.block_channels = kernel, block_channels
        if kernel != "torch":
            _check_triton(device)
            from hyena_lite.modal_kernel import channels_per_program

            if block_channels is None:
                self.block_channels = channels_per_program(batch, op.d_model, device)
            elif block_channels < 1 or block_channels & (block_channels - 1):
                raise ValueError(f"block_channels must be a power of two, got {block_channels}")
        fit = fit.to(device=device, dtype=torch.float32)
        N, D = op.order, op.d_model
        width, taps = (N + 1) * D, op.short_filter.weight.shape[-1]
        if fit.poles.shape[0] != N * D:
            raise ValueError(
                f"the modal fit holds {fit.poles.shape[0]} filters, the operator {N * D} "
                f"(order {N} x width {D}); fit this operator's filters"
            )
        self.op, self.order, self.width = op, N, D
        poles, residues = fit.poles.view(N, D, -1), fit.residues.view(N, D, -1)
        fir = fit.fir.view(N, D, -1).flip(-1)  # reversed: fir[..., -1] is h_0
        conv_bias = op.short_filter.bias
        constants = {
            "poles_re": poles.real,
            "poles_im": poles.imag,
            "res_re": residues.real,
            "res_im": residues.imag,
            "fir_past": fir[..., :-1],  # the taps of the F - 1 older inputs
            "gain": fir[..., -1] + op.long_filters(1)[1],  # g_n = h_0 + skip [N, D]
            "conv_w": op.short_filter.weight[:, 0].detach().float(),
            "conv_b": torch.zeros(width, device=device)
            if conv_bias is None
            else conv_bias.detach().float(),
        }
        modes, head = poles.shape[-1], fit.fir.shape[-1]
        states = {
            "window": (batch, width, taps),
            "recent": (N, batch, D, head),
            "state_re": (N, batch, D, modes),
            "state_im": (N, batch, D, modes),
        }
        for name, value in constants.items():
            self.register_buffer(name, value.detach().contiguous().clone(), persistent=False)
        for name, shape in states.items():
            self.register_buffer(name, torch.zeros(shape, device=device), persistent=False)
        self.state_names = tuple(states)

    def load(self, decoder: RecurrentDecoder) -> None:
        """Copy in, in place, the state that `decoder` holds after its prefill."""
        if decoder.window is None or decoder.state is None:
            raise RuntimeError("the RecurrentDecoder holds no state yet: prefill it first")
        if decoder.window.shape != self.window.shape:
            raise ValueError(
                f"the decoder's batch {decoder.window.shape[0]} is not this step's "
                f"{self.window.shape[0]}; build the ModalStep for that batch"
            )
        self.window.copy_(decoder.window)
        self.recent.copy_(decoder.recent)
        self.state_re.copy_(decoder.state.real)
        self.state_im.copy_(decoder.state.imag)

    def state_bytes(self) -> int:
        """Bytes of the per-sequence state (window, FIR inputs, modal states)."""
        return _tensor_bytes(getattr(self, name) for name in self.state_names)

    def constant_bytes(self) -> int:
        """Bytes of the fitted constants a step reads (poles, residues, FIR taps, the newest tap
        plus skip, short filter)."""
        names = set(dict(self.named_buffers())) - set(self.state_names)
        return _tensor_bytes(getattr(self, name) for name in sorted(names))

    def _short_filter(self, p: Tensor, group: int, dtype: torch.dtype) -> Tensor:
        """The short filter's output [B, D] for the channels of `group` (the gates z_0 .. z_{N-1},
        then the first input y_0) after the new projected input p [B, (N + 1) D], tap by tap: one
        element-wise expression each, which inductor computes where it is used."""
        channels = slice(group * self.width, (group + 1) * self.width)
        weight, window = self.conv_w[channels], self.window[:, channels]
        z = self.conv_b[channels] + p[:, channels] * weight[:, -1]
        for k in range(window.shape[-1] - 1):
            z = z + window[..., k + 1] * weight[:, k]
        return z.to(dtype).float()

    def forward(self, u: Tensor) -> Tensor:
        op, N = self.op, self.order
        if self.kernel != "torch":
            from hyena_lite.modal_kernel import modal_step

            if self.kernel == "triton_fused":
                partial = modal_step(self, u[:, 0], in_proj=True, out_proj=True)
                return (partial.sum(0) + op.out_proj.bias).to(u.dtype)[:, None]
            y = modal_step(self, u[:, 0], in_proj=self.kernel == "triton_in_proj")
            return op.out_proj(y)[:, None]
        p = op.in_proj(u[:, 0]).float()  # [B, (N + 1) D]
        re, im = self.state_re, self.state_im  # [N, B, D, m]
        known = (self.fir_past[:, None] * self.recent[..., 1:]).sum(-1) + (
            self.res_re[:, None] * re - self.res_im[:, None] * im
        ).sum(-1)  # c_n [N, B, D]: every stage's output but for its newest input
        y, inputs = self._short_filter(p, N, u.dtype), []
        for n in range(N):
            inputs.append(y)
            y = self._short_filter(p, n, u.dtype) * (known[n] + self.gain[n] * y)
        recent = _shifted(self.recent, torch.stack(inputs))
        poles_re, poles_im = self.poles_re[:, None], self.poles_im[:, None]
        new_re = poles_re * re - poles_im * im + recent[..., :1]  # + the input leaving the head
        new_im = poles_re * im + poles_im * re
        self.window.copy_(_shifted(self.window, p))
        self.state_re.copy_(new_re)
        self.state_im.copy_(new_im)
        self.recent.copy_(recent)
        return op.out_proj(y.to(u.dtype))[:, None]


class _StepMixer(nn.Module):
    """Stands in for a HyenaMixer during a step: the layer's call, answered by a ModalStep."""

    def __init__(self, step: ModalStep) -> None:
        super().__init__()
        self.step = step

    def forward(self, *args: Any, **kwargs: Any) -> tuple[Tensor, None]:
        hidden = args[0] if args else kwargs["hidden_states"]
        return self.step(hidden), None


class _GraphStep:
    """What both decoders share: a step function over static buffers, run eagerly or replayed from
    a CUDA graph recorded at the first step (after warm-up calls that compile it when asked)."""

    def __init__(self, device: torch.device, graph: bool | None) -> None:
        self.device = device
        self.graph = device.type == "cuda" if graph is None else graph
        if self.graph and device.type != "cuda":
            raise ValueError(f"graph=True records a CUDA graph; the model is on {device}")
        self._graph: torch.cuda.CUDAGraph | None = None
        self._logits: Tensor | None = None

    def _run(self) -> Tensor:
        """One step from the static buffers: its logits [B, V]; advances the state."""
        raise NotImplementedError

    def _snapshot(self) -> Callable[[], None]:
        """A function that puts the state back as it is now (to undo the warm-up steps)."""
        raise NotImplementedError

    @torch.no_grad()
    def replay(self) -> Tensor:
        """One step (tokens already in place): the recorded graph's replay, or an eager call."""
        if not self.graph:
            return self._run()
        if self._graph is None:
            self._graph, self._logits = record(
                self._run, self.device, warmup=2, before_recording=self._snapshot()
            )
        self._graph.replay()
        return self._logits


class StudentGraphDecoder(_GraphStep):
    """Recurrent decoding of an all-Hyena student, batch `batch`: `prefill(ids)`, then
    `step(tokens)`.

    The prefill is `hyena_lite.generation.Decoder`'s (recurrent mode, FFT over the prompt); each
    step runs the whole model (embeddings, every layer's `ModalStep` and MLP, the head) from static
    buffers: on CUDA (or with graph=True) recorded once as a CUDA graph and replayed, compiled by
    torch.compile first with `compile` (True or a name in COMPILE_SETTINGS; default: True on
    CUDA, where inductor's fused step ran 2.7x faster on an H200 at batch 1, 2.5x at batch 16).
    A new prefill reuses the same graph.
    `kernel="triton"` runs each layer's mixer as one Triton kernel, "triton_in_proj" with its input
    projection inside it, "triton_fused" with both projections (see `ModalStep`; `block_channels`
    is its kernel's channels per program). `mlp_kernel="triton"` runs each GPT-2 MLP as one Triton
    kernel too (`hyena_lite.mlp_kernel`); `mlp_kernel="triton_blocks"` (with kernel="triton_fused")
    writes the step block by block, each block's residual adds and norms inside its two Triton
    kernels (`hyena_lite.block_steps`), launched as programmatic dependents with `pdl` (default:
    where the GPU has them).
    """

    def __init__(
        self,
        model: nn.Module,
        fits: dict[int, ModalFilter],
        batch: int,
        compile: bool | str | None = None,
        graph: bool | None = None,
        kernel: str = "torch",
        block_channels: int | None = None,
        mlp_kernel: str = "torch",
        pdl: bool | None = None,
    ) -> None:
        if mlp_kernel == "triton_blocks" and kernel != "triton_fused":
            raise ValueError(
                "mlp_kernel='triton_blocks' runs each block as the whole-mixer and MLP Triton "
                f"kernels: pass kernel='triton_fused' with it (got kernel={kernel!r})"
            )
        operators = hyena_operators(model)
        if len(operators) < model.config.num_hidden_layers or not operators:
            raise ValueError(
                "StudentGraphDecoder decodes students whose every layer is Hyena; a hybrid keeps a "
                "growing key-value cache: decode it with hyena_lite.generation.Decoder"
            )
        missing = sorted(set(operators) - set(fits))
        if missing:
            raise ValueError(
                f"no modal fit for Hyena layers {missing}; fit them with fit_student(model)"
            )
        device = next(model.parameters()).device
        super().__init__(device, graph)
        self.model, self.fits, self.batch = model, fits, batch
        self.steps = {
            i: ModalStep(op, fits[i], batch, kernel=kernel, block_channels=block_channels)
            for i, op in operators.items()
        }
        self.mixers = {i: _StepMixer(step) for i, step in self.steps.items()}
        self.mlps = _mlp_steps(model, mlp_kernel)
        self.tokens = torch.zeros(batch, 1, dtype=torch.long, device=device)
        self.position = torch.zeros((), dtype=torch.long, device=device)
        self.mask = torch.ones(batch, 1, 1, 1, dtype=torch.bool, device=device)
        self.compile = device.type == "cuda" if compile is None else compile
        if mlp_kernel == "triton_blocks":
            from hyena_lite.block_steps import StudentBlockStep

            blocks = StudentBlockStep(
                model,
                self.steps,
                batch,
                lambda fn: _compiled(fn, self.compile),
                _dependent_launches(pdl, device),
            )
            self._forward = lambda: blocks(self.tokens, self.position)
        else:
            self._forward = _compiled(self._logits_of_step, self.compile)

    def _logits_of_step(self) -> Tensor:
        positions = self.position.view(1, 1).expand(self.batch, 1)
        out = self.model(
            self.tokens,
            position_ids=positions,
            attention_mask=self.mask,  # 4-D: used as it is, no mask building (which syncs)
            use_cache=False,
            logits_to_keep=1,
        )
        return out.logits[:, -1]

    def _run(self) -> Tensor:
        with _step_modules(self.model, self.mixers, self.mlps):
            logits = self._forward()
        self.position.add_(1)
        return logits

    def _snapshot(self) -> Callable[[], None]:
        saved = [
            (t, t.clone())
            for step in self.steps.values()
            for t in (getattr(step, n) for n in step.state_names)
        ]
        saved.append((self.position, self.position.clone()))
        return lambda: [t.copy_(old) for t, old in saved] and None

    def prefill(self, ids: Tensor) -> Tensor:
        """Start new sequences with the prompts ids [batch, T]: the logits of their last position,
        [batch, V]."""
        from hyena_lite.generation import Decoder

        if ids.dim() != 2 or ids.shape[0] != self.batch:
            raise ValueError(
                f"ids must have shape [batch={self.batch}, length], got {tuple(ids.shape)}"
            )
        with torch.no_grad(), Decoder(self.model, "recurrent", fits=self.fits) as decoder:
            logits = decoder.prefill(ids)
            for i, step in self.steps.items():
                step.load(decoder.decoders[i])
        self.rewind(ids.shape[1])
        return logits

    def rewind(self, position: int) -> None:
        """Set the position of the next token (a benchmark steps past its prompt and comes back)."""
        self.position.fill_(position)

    def step(self, tokens: Tensor) -> Tensor:
        """Feed the next tokens [batch, 1] (or [batch]): the logits after them, [batch, V]."""
        with torch.no_grad():
            self.tokens.copy_(tokens.view(self.batch, 1))
            return self.replay().clone()

    def state_bytes(self) -> int:
        """Bytes of the decoding state of the batch (every layer's window, FIR inputs and modes)."""
        return sum(step.state_bytes() for step in self.steps.values())

    def read_bytes(self) -> int:
        """Bytes a step must read: the weights it uses (not the implicit filters, replaced by their
        modal fit), the fitted constants and the state."""
        weights = weight_bytes(self.model, skip=lambda name: ".filter_fn." in name)
        constants = sum(step.constant_bytes() for step in self.steps.values())
        return weights + constants + self.state_bytes()


# ------------------------------------------------------------------------------------ the teacher
class TeacherGraphDecoder(_GraphStep):
    """Key-value-cache decoding of a transformer with transformers' StaticCache, batch `batch`,
    up to `max_len` positions: `prefill(ids)`, then `step(tokens)`.

    The prefill runs the model with its ordinary (dynamic) cache, `prefill_tokens` tokens at a time
    (whole rows), and copies keys and values into the static cache, whose tensors keep their
    addresses. A step reads its position from the cache's own counter and builds its mask and
    position ids from it on the device, so that the whole step (on CUDA, or with graph=True) is
    recorded once as a CUDA graph, after torch.compile with `compile` (True or a name in
    COMPILE_SETTINGS). `mlp_kernel="triton"` runs each GPT-2 MLP of a step as one Triton kernel,
    as the student's can (`hyena_lite.mlp_kernel`): the same help on both sides.
    `mlp_kernel="triton_blocks"` writes the step block by block as the student's can
    (`hyena_lite.block_steps`): the attention as torch code, the MLP with its block's residual add
    and norm in one Triton kernel, launched as a programmatic dependent with `pdl` (default: where
    the GPU has them); `attention` (decode_attention.ATTENTIONS) picks how it reads the cache.
    """

    def __init__(
        self,
        model: nn.Module,
        batch: int,
        max_len: int,
        compile: bool | str = False,
        graph: bool | None = None,
        prefill_tokens: int = 65_536,
        mlp_kernel: str = "torch",
        pdl: bool | None = None,
        attention: str = "sdpa",
    ) -> None:
        from transformers import StaticCache

        device = next(model.parameters()).device
        super().__init__(device, graph)
        if hyena_operators(model):
            raise ValueError(
                "TeacherGraphDecoder decodes transformers; decode a Hyena student with "
                "StudentGraphDecoder"
            )
        if attention != "sdpa" and mlp_kernel != "triton_blocks":
            raise ValueError(
                f"attention={attention!r} is the block-by-block step's: pass "
                "mlp_kernel='triton_blocks' (through transformers' forward the model's own "
                "attention runs)"
            )
        self.model, self.batch, self.max_len = model, batch, max_len
        self.prefill_tokens = prefill_tokens
        self.cache = StaticCache(config=model.config, max_cache_len=max_len)
        self.cache_name = kv_cache_argument(model)
        self.tokens = torch.zeros(batch, 1, dtype=torch.long, device=device)
        self.key_index = torch.arange(max_len, device=device)
        self.context = 0
        self.mlps = _mlp_steps(model, mlp_kernel)
        if mlp_kernel == "triton_blocks":
            from hyena_lite.block_steps import TeacherBlockStep

            blocks = TeacherBlockStep(
                model,
                self.cache,
                batch,
                lambda fn: _compiled(fn, compile),
                _dependent_launches(pdl, device),
                attention,
            )
            self._forward = lambda: blocks(self.tokens)
        else:
            self._forward = _compiled(self._logits_of_step, compile)

    def _counter(self) -> Tensor:
        """The cache's count of stored positions (a device tensor that its update advances)."""
        return self.cache.layers[0].cumulative_length

    def _logits_of_step(self) -> Tensor:
        position = self._counter()
        positions = position.view(1, 1).expand(self.batch, 1)
        mask = (self.key_index <= position).view(1, 1, 1, -1).expand(self.batch, 1, 1, -1)
        out = self.model(
            self.tokens,
            position_ids=positions,
            attention_mask=mask.contiguous(),  # 4-D: used as it is, no mask building
            use_cache=True,
            logits_to_keep=1,
            **{self.cache_name: self.cache},
        )
        return out.logits[:, -1]

    def _run(self) -> Tensor:
        with _step_modules(self.model, {}, self.mlps):
            return self._forward()

    def _snapshot(self) -> Callable[[], None]:
        position = int(self._counter())
        return lambda: self.rewind(position)

    def rewind(self, position: int) -> None:
        """Set the position of the next token (the cached keys beyond it are ignored, then
        overwritten)."""
        for layer in self.cache.layers:
            layer.cumulative_length.fill_(position)

    def prefill(self, ids: Tensor) -> Tensor:
        """Start new sequences with the prompts ids [batch, T]: the logits of their last position,
        [batch, V]."""
        batch, length = ids.shape if ids.dim() == 2 else (None, None)
        if batch != self.batch or length < 1 or length >= self.max_len:
            raise ValueError(
                f"ids must have shape [batch={self.batch}, length < max_len={self.max_len}], got "
                f"{tuple(ids.shape)}"
            )
        rows, logits = max(1, self.prefill_tokens // length), []
        with torch.no_grad():
            for start in range(0, batch, rows):
                part = ids[start : start + rows]
                out = self.model(part, use_cache=True, logits_to_keep=1)
                cache = out["cache"] if "cache" in out else out.past_key_values
                for static, layer in zip(self.cache.layers, cache.layers, strict=True):
                    if not static.is_initialized:
                        empty = layer.keys.new_empty(
                            batch, layer.keys.shape[1], 0, layer.keys.shape[-1]
                        )
                        static.lazy_initialization(empty, empty)
                    static.keys[start : start + rows, :, :length].copy_(layer.keys)
                    static.values[start : start + rows, :, :length].copy_(layer.values)
                logits.append(out.logits[:, -1])
                del out, cache
        self.rewind(length)
        self.context = length
        return torch.cat(logits)

    def step(self, tokens: Tensor) -> Tensor:
        """Feed the next tokens [batch, 1] (or [batch]): the logits after them, [batch, V]."""
        with torch.no_grad():
            self.tokens.copy_(tokens.view(self.batch, 1))
            return self.replay().clone()

    def state_bytes(self) -> int:
        """Bytes of the static key-value cache (all `max_len` positions)."""
        return _tensor_bytes(
            t
            for layer in self.cache.layers
            if layer.is_initialized
            for t in (layer.keys, layer.values)
        )

    def read_bytes(self, context: int | None = None) -> int:
        """Bytes a step at `context` cached positions (default: the prompt's) must read: the
        weights and the keys and values of those positions."""
        context = self.context if context is None else context
        return weight_bytes(self.model) + self.state_bytes() * context // self.max_len
