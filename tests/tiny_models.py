"""Helpers shared by the tests: tiny GPT-2 teachers saved as folders, a private HYENA_LITE_HOME, and
synthetic long filters of a known order."""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from hyena_lite.data import gpt2_tokenizer
from hyena_lite.paths import assets_dir


def random_gpt2(
    vocab: int,
    positions: int,
    width: int = 32,
    layers: int = 2,
    seed: int = 0,
    dropout: float = 0.0,
    **config,
) -> GPT2LMHeadModel:
    """A random two-head GPT-2 drawn after `torch.manual_seed(seed)`, in training mode, with
    `dropout` everywhere; `config` adds GPT2Config fields."""
    torch.manual_seed(seed)
    return GPT2LMHeadModel(
        GPT2Config(
            vocab_size=vocab,
            n_positions=positions,
            n_embd=width,
            n_layer=layers,
            n_head=2,
            resid_pdrop=dropout,
            embd_pdrop=dropout,
            attn_pdrop=dropout,
            **config,
        )
    )


def random_llama(
    vocab: int, positions: int, width: int = 32, layers: int = 2, seed: int = 0, **config
) -> LlamaForCausalLM:
    """A random Llama with grouped-query attention (4 heads, 2 key-value heads, as SmolLM2's
    family) drawn after `torch.manual_seed(seed)`, in eval mode; `config` adds LlamaConfig
    fields."""
    torch.manual_seed(seed)
    return LlamaForCausalLM(
        LlamaConfig(
            vocab_size=vocab,
            hidden_size=width,
            intermediate_size=2 * width,
            num_hidden_layers=layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=positions,
            **config,
        )
    ).eval()


def random_batches(vocab: int, batch: int, seq: int) -> Callable[[int], Iterator[torch.Tensor]]:
    """`batches_from(start)` for the distillation loops: uniform random tokens, batch i drawn
    from seed i, so that a resumed stream repeats the batches of an unbroken one."""

    def batches_from(start: int) -> Iterator[torch.Tensor]:
        index = start
        while True:
            g = torch.Generator().manual_seed(index)
            yield torch.randint(0, vocab, (batch, seq), generator=g)
            index += 1

    return batches_from


def save_tiny_gpt2(
    folder: Path, seed: int = 0, positions: int = 64, layers: int = 2, width: int = 16
) -> Path:
    """A random GPT-2 with the real GPT-2 tokenizer, saved with save_pretrained in `folder` (a
    teacher by path)."""
    tokenizer = gpt2_tokenizer()
    model = random_gpt2(
        len(tokenizer),
        positions,
        width,
        layers,
        seed,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def private_home(root: Path, copy_corpus: bool = False) -> Path:
    """A HYENA_LITE_HOME of its own (artifacts written there) reading the built assets: linked, or
    with a copy of the corpus that a test may damage. Its tokenizer has another path, so corpus
    tokens are not cached."""
    build = root / "data" / "build"
    build.mkdir(parents=True)
    for entry in assets_dir().iterdir():
        if entry.name == "corpus" and copy_corpus:
            shutil.copytree(entry, build / "corpus")
        else:
            os.symlink(entry, build / entry.name)
    return root


def sum_of_exponentials(channels: int, length: int, modes: int, seed: int = 0) -> torch.Tensor:
    """Filters that are exactly sums of `modes` damped cosines after a random first tap: real order
    2 * modes."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(length, dtype=torch.float64)
    radius = 0.85 + 0.14 * torch.rand(channels, modes, 1, generator=g, dtype=torch.float64)
    angle = math.pi * torch.rand(channels, modes, 1, generator=g, dtype=torch.float64)
    amp = torch.randn(channels, modes, 1, generator=g, dtype=torch.float64)
    h = (amp * radius**t * torch.cos(angle * t)).sum(1)
    h[:, 0] = torch.randn(channels, generator=g, dtype=torch.float64)
    return h


class KnownAttention(torch.nn.Module):
    """A stand-in causal LM whose attention patterns are set by hand, so that its previous-token
    and induction scores are known: layer 0 attends to the previous position, layer 1 to the
    position after the last earlier occurrence of the current token (else to position 0), layer 2
    uniformly to every position so far. Its logits copy as layer 1 says (a perfect copier)."""

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab = vocab
        self.config = SimpleNamespace(_attn_implementation="eager")

    def forward(self, input_ids, output_attentions=False, **_):
        batch, length = input_ids.shape
        previous = torch.zeros(length, length)
        previous[0, 0] = 1.0
        previous[torch.arange(1, length), torch.arange(length - 1)] = 1.0
        uniform = torch.tril(torch.ones(length, length))
        uniform = uniform / uniform.sum(-1, keepdim=True)
        induction = torch.zeros(batch, length, length)
        logits = torch.zeros(batch, length, self.vocab)
        for b, row in enumerate(input_ids.tolist()):
            last: dict[int, int] = {}
            for t, token in enumerate(row):
                source = last[token] + 1 if token in last else 0
                induction[b, t, source] = 1.0
                if token in last:
                    logits[b, t, row[source]] = 1.0
                last[token] = t
        attentions = (
            previous.expand(batch, 1, length, length),
            induction[:, None],
            uniform.expand(batch, 1, length, length),
        )
        return SimpleNamespace(logits=logits, attentions=attentions if output_attentions else None)
