"""Worker of tests/test_multi_process.py: attention transfer on a tiny GPT-2, in this process or one
of N under torchrun; writes the losses and the mixers' weights to the path in argv[1] (with .rankR
under torchrun)."""

from __future__ import annotations

import sys

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from hyena_lite import distill
from hyena_lite.models import convert, layer_mixers
from hyena_lite.training import TrainConfig


def batches_from(start: int):
    index = start
    while True:
        g = torch.Generator().manual_seed(index)
        yield torch.randint(0, 40, (4, 16), generator=g)
        index += 1


def main(path: str) -> None:
    from accelerate import PartialState

    torch.set_num_threads(1)
    torch.manual_seed(0)
    teacher = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=40,
            n_positions=16,
            n_embd=32,
            n_layer=2,
            n_head=2,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
        )
    ).eval()
    student = convert(teacher, init="random")
    config = TrainConfig(steps=6, lr=3e-3, batch_size=4, seq_len=16, device="cpu", progress=False)
    result = distill.transfer(student, teacher, batches_from, config)
    state = PartialState()
    weights = {
        f"{i}.{k}": v
        for i, m in enumerate(layer_mixers(student))
        for k, v in m.state_dict().items()
    }
    out = path if state.num_processes == 1 else f"{path}.rank{state.process_index}"
    torch.save({"losses": result.losses, "weights": weights}, out)


if __name__ == "__main__":
    main(sys.argv[1])
