"""Helpers of the robustness tests: tiny GPT-2 teachers saved as folders, and a private
HYENA_LITE_HOME."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from hyena_lite.data import gpt2_tokenizer
from hyena_lite.paths import assets_dir


def save_tiny_gpt2(
    folder: Path, seed: int = 0, positions: int = 64, layers: int = 2, width: int = 16
) -> Path:
    """A random GPT-2 with the real GPT-2 tokenizer, saved with save_pretrained in `folder` (a
    teacher by path)."""
    tokenizer = gpt2_tokenizer()
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=positions,
        n_embd=width,
        n_layer=layers,
        n_head=2,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    GPT2LMHeadModel(config).save_pretrained(folder)
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
