"""`python -m hyena_lite` for tests that signal a real process: teacher names load the tiny folders
given in $TINY_TEACHERS (name=folder,...) with the offline tokenizer, the smoke profile validates on
fewer tokens, and torch uses one thread (tiny models run ten times slower on two threads of a busy
machine)."""

from __future__ import annotations

import os
import sys

import torch
from transformers import GPT2LMHeadModel

from hyena_lite import data, profiles, teachers
from hyena_lite.cli import main

FOLDERS = dict(item.split("=", 1) for item in os.environ["TINY_TEACHERS"].split(","))
teachers.load_teacher = lambda name, profile=None: (
    GPT2LMHeadModel.from_pretrained(FOLDERS[name]).eval(),
    data.gpt2_tokenizer(),
)
profiles.PROFILES["smoke"] = profiles.PROFILES["smoke"].replace(seq_len=32, eval_tokens=256)
torch.set_num_threads(1)

if __name__ == "__main__":
    sys.exit(main())
