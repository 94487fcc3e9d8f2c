"""A GPT-2-shaped model's decoding step written block by block, each block's residual adds and
norms folded into its Triton kernels (`hyena_lite.block_prologue`), for both decoders of
`hyena_lite.fastdecode` alike.

Through transformers' forward, a compiled step puts element-wise kernels between the Triton ones:
the sum of a kernel's partial rows, the residual add, the next norm. Here every Triton kernel
starts from the residual stream (its prologue adds the previous sub-layer's output and normalises)
and ends in a float32 accumulator (its programs add their products into it), so an all-Hyena
student's block is two launches, the mixer (`modal_kernel`) and the MLP (`mlp_kernel`), and the
kernels can be launched as programmatic dependents (`pdl`, Hopper and later): the MLP reads its
weights while the mixer before it finishes. The teacher's block gets the same MLP; its attention
(norm, `c_attn`, the static cache's update, attention over the cache, `c_proj`) is written out as
transformers computes it and compiled by torch.compile, the attention over the cache by PyTorch's
scaled dot-product attention or by flash decoding's split kernel (`hyena_lite.decode_attention`).

The embeddings and the head run as torch code, compiled with the decoder's `compile` setting.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hyena_lite.block_prologue import NormInput
from hyena_lite.decode_attention import ATTENTIONS, attend

if TYPE_CHECKING:
    from hyena_lite.fastdecode import ModalStep


def check_gpt2(model: nn.Module) -> None:
    """Refuse a model whose step this module does not write (GPT-2's layout only)."""
    transformer = getattr(model, "transformer", None)
    parts = ("wte", "wpe", "h", "ln_f")
    if transformer is None or not all(hasattr(transformer, p) for p in parts):
        raise ValueError(
            f"{type(model).__name__} is not laid out as GPT-2 (transformer.wte, wpe, h, ln_f): "
            "the block-by-block step is written for GPT-2 and its students; decode this model "
            "with mlp_kernel='torch' (or 'triton' for GPT-2's MLP)"
        )
    for i, block in enumerate(transformer.h):
        for name in ("ln_1", "ln_2"):
            if not isinstance(getattr(block, name, None), nn.LayerNorm):
                raise ValueError(
                    f"block {i}'s {name} is not a LayerNorm, which the kernels' prologue computes; "
                    "decode this model with mlp_kernel='torch' or 'triton'"
                )


class _BlockStep:
    """What both block-by-block steps share: the checks, accumulators, streams, the MLP kernel's
    units a program, the embeddings and the head. `kernels_per_block`: the step's Triton kernels
    in a block (each gets an accumulator and a residual stream)."""

    def __init__(
        self,
        model: nn.Module,
        batch: int,
        kernels_per_block: int,
        compile: Callable[[Callable[..., Any]], Callable[..., Any]],
        pdl: bool,
    ) -> None:
        from hyena_lite.mlp_kernel import check_mlp, units_per_program

        check_gpt2(model)
        self.model, self.batch, self.pdl = model, batch, pdl
        self.blocks = list(model.transformer.h)
        for block in self.blocks:
            check_mlp(block.mlp)
        weight = model.transformer.wte.weight
        width, device, dtype = weight.shape[1], weight.device, weight.dtype
        hidden = self.blocks[0].mlp.c_fc.weight.shape[1]
        self.hidden_per_program = units_per_program(hidden, device)
        sublayers = kernels_per_block * len(self.blocks)
        self.sums = torch.zeros(sublayers, batch, width, device=device, dtype=torch.float32)
        self.streams = torch.zeros(sublayers, batch, width, device=device, dtype=dtype)
        self.no_delta = torch.zeros(batch, width, device=device, dtype=torch.float32)
        self.no_bias = torch.zeros(width, device=device, dtype=dtype)
        self._embed = compile(self._embeddings)
        self._head = compile(self._logits)

    def _embeddings(self, tokens: Tensor, position: Tensor) -> Tensor:
        transformer = self.model.transformer
        positions = position.view(1).expand(self.batch)
        return transformer.wte(tokens[:, 0]) + transformer.wpe(positions)

    def _logits(self, base: Tensor, delta: Tensor, bias: Tensor) -> Tensor:
        h = base + (delta + bias).to(base.dtype)
        return self.model.lm_head(self.model.transformer.ln_f(h))


class StudentBlockStep(_BlockStep):
    """An all-Hyena GPT-2 student's step: two Triton kernels a block (the whole mixer with its
    norm, `modal_kernel.modal_step`; the MLP with its norm, `mlp_kernel.mlp_partials`)."""

    def __init__(
        self,
        model: nn.Module,
        steps: dict[int, ModalStep],
        batch: int,
        compile: Callable[[Callable[..., Any]], Callable[..., Any]],
        pdl: bool,
    ) -> None:
        super().__init__(model, batch, 2, compile, pdl)
        self.steps = [steps[i] for i in range(len(self.blocks))]

    def __call__(self, tokens: Tensor, position: Tensor) -> Tensor:
        from hyena_lite.mlp_kernel import mlp_partials
        from hyena_lite.modal_kernel import modal_step

        self.sums.zero_()
        base, delta, bias = self._embed(tokens, position), self.no_delta, self.no_bias
        for i, (block, step) in enumerate(zip(self.blocks, self.steps, strict=True)):
            mixed, mid = self.sums[2 * i], self.sums[2 * i + 1]
            into = NormInput(base, delta, bias, block.ln_1, self.streams[2 * i])
            modal_step(step, None, True, True, norm=into, accumulator=mixed, pdl=self.pdl)
            into = NormInput(
                self.streams[2 * i],
                mixed,
                step.op.out_proj.bias,
                block.ln_2,
                self.streams[2 * i + 1],
            )
            mlp_partials(
                block.mlp, None, self.hidden_per_program, norm=into, accumulator=mid, pdl=self.pdl
            )
            base, delta, bias = self.streams[2 * i + 1], mid, block.mlp.c_proj.bias
        return self._head(base, delta, bias)


class TeacherBlockStep(_BlockStep):
    """A GPT-2 teacher's step over a transformers StaticCache: per block, the attention as torch
    code (compiled; `attention`, one of `decode_attention.ATTENTIONS`, says how it reads the
    cache) and the MLP with its norm as one Triton kernel, the same as the student's."""

    def __init__(
        self,
        model: nn.Module,
        cache: Any,
        batch: int,
        compile: Callable[[Callable[..., Any]], Callable[..., Any]],
        pdl: bool,
        attention: str = "sdpa",
    ) -> None:
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {attention!r}")
        super().__init__(model, batch, 1, compile, pdl)
        config = model.config
        if getattr(config, "add_cross_attention", False):
            raise ValueError(
                "the block-by-block step has no cross-attention: decode this model with "
                "mlp_kernel='torch' or 'triton'"
            )
        self.cache, self.heads, self.attention = cache, config.n_head, attention
        device = model.transformer.wte.weight.device
        self.arrivals = torch.zeros(batch * self.heads, dtype=torch.int32, device=device)
        head_dim = config.n_embd // config.n_head
        scale = head_dim**-0.5 if config.scale_attn_weights else 1.0
        self.scales = [
            scale / (i + 1) if config.scale_attn_by_inverse_layer_idx else scale
            for i in range(len(self.blocks))
        ]
        self._attend = compile(self._attention)
        self._advance = compile(self._advanced)

    def _attention(
        self,
        base: Tensor,
        delta: Tensor,
        bias: Tensor,
        weights: tuple[Tensor, ...],
        keys: Tensor,
        values: Tensor,
        position: Tensor,
        scale: float,
        eps: float,
    ) -> tuple[Tensor, Tensor]:
        """The block's input h (the residual add) and its attention's output [B, D], from the
        block's weights (ln_1's, c_attn's, c_proj's: tensors, so that one compiled graph serves
        every block)."""
        norm_w, norm_b, attn_w, attn_b, proj_w, proj_b = weights
        h = base + (delta + bias).to(base.dtype)
        x = F.layer_norm(h, h.shape[-1:], norm_w, norm_b, eps)
        q, k, v = torch.addmm(attn_b, x, attn_w).split(h.shape[-1], dim=-1)
        q, k, v = (t.view(self.batch, self.heads, 1, -1) for t in (q, k, v))
        keys.index_copy_(2, position.view(1), k)
        values.index_copy_(2, position.view(1), v)
        out = attend(
            self.attention, q[:, :, 0], keys, values, position, scale, arrivals=self.arrivals
        )
        return h, torch.addmm(proj_b, out.reshape(self.batch, -1), proj_w)

    def _advanced(self, counters: list[Tensor]) -> None:
        """Every layer's cache counter one position on, as the cache's own update does."""
        torch._foreach_add_(counters, 1)

    def __call__(self, tokens: Tensor) -> Tensor:
        from hyena_lite.mlp_kernel import mlp_partials

        layers = self.cache.layers
        position = layers[0].cumulative_length
        self.sums.zero_()
        base, delta, bias = self._embed(tokens, position), self.no_delta, self.no_bias
        for i, block in enumerate(self.blocks):
            attn = block.attn
            weights = (
                block.ln_1.weight,
                block.ln_1.bias,
                attn.c_attn.weight,
                attn.c_attn.bias,
                attn.c_proj.weight,
                attn.c_proj.bias,
            )
            h, attended = self._attend(
                base,
                delta,
                bias,
                weights,
                layers[i].keys,
                layers[i].values,
                position,
                self.scales[i],
                block.ln_1.eps,
            )
            into = NormInput(h, attended, self.no_bias, block.ln_2, self.streams[i])
            mlp_partials(
                block.mlp,
                None,
                self.hidden_per_program,
                norm=into,
                accumulator=self.sums[i],
                pdl=self.pdl,
            )
            base, delta, bias = self.streams[i], self.sums[i], block.mlp.c_proj.bias
        logits = self._head(base, delta, bias)
        self._advance([layer.cumulative_length for layer in layers])
        return logits
