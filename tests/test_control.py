"""The control: the teacher fine-tuned with cross-entropy sees exactly the batches a recipe's
student sees, changes, and leaves the teacher as it was."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from hyena_lite import distill
from hyena_lite.control import fine_tuned_teacher
from hyena_lite.data import iterate_batches
from hyena_lite.training import TrainConfig

VOCAB, SEQ, BATCH = 64, 16, 2


@dataclass
class LoggedSetup(distill.Setup):
    """A setup whose batch stream records the index of every micro-batch it hands out."""

    log: list[int] | None = None

    def batches_fn(self):
        def stream(start: int):
            batches = iterate_batches(self.train_tokens, BATCH, SEQ, seed=0, start_step=start)
            for i, batch in enumerate(batches, start):
                self.log.append(i)
                yield batch

        return stream


def tiny_teacher() -> GPT2LMHeadModel:
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=VOCAB, n_positions=SEQ, n_embd=16, n_layer=2, n_head=2)
    return distill.freeze(GPT2LMHeadModel(config))


def test_fine_tuned_teacher_sees_the_students_batches_and_spares_the_teacher(tmp_path):
    teacher, windows = tiny_teacher(), torch.randint(0, VOCAB, (4, SEQ))
    config = TrainConfig(
        steps=1, lr=3e-3, batch_size=BATCH, seq_len=SEQ, device="cpu", progress=False
    )
    setup = LoggedSetup(
        teacher, None, torch.randint(0, VOCAB, (4096,)), windows, windows, config, log=[]
    )
    tokens = 8 * BATCH * SEQ
    distill.run_recipe("transfer", setup, tokens)
    student_batches = sorted(setup.log)
    before = {n: p.clone() for n, p in teacher.named_parameters()}
    setup.log.clear()
    tuned, result = fine_tuned_teacher(setup, tokens)
    assert sorted(setup.log) == student_batches == list(range(8))
    assert result.tokens == tokens
    assert all(torch.equal(p, before[n]) for n, p in teacher.named_parameters())
    assert any(not torch.equal(p, before[n]) for n, p in tuned.named_parameters())
    assert not tuned.training and not any(p.requires_grad for p in tuned.parameters())


def test_a_finished_control_is_found_again_in_its_folder(tmp_path):
    teacher, windows = tiny_teacher(), torch.randint(0, VOCAB, (4, SEQ))
    config = TrainConfig(
        steps=1,
        lr=3e-3,
        batch_size=BATCH,
        seq_len=SEQ,
        device="cpu",
        progress=False,
        out_dir=str(tmp_path),
    )
    setup = LoggedSetup(
        teacher, None, torch.randint(0, VOCAB, (4096,)), windows, windows, config, log=[]
    )
    first, _ = fine_tuned_teacher(setup, 4 * BATCH * SEQ)
    assert (tmp_path / "teacher_ft" / "model.pt").is_file()
    again, result = fine_tuned_teacher(setup, 4 * BATCH * SEQ)
    assert result.skipped
    assert all(
        torch.equal(a, b) for a, b in zip(first.parameters(), again.parameters(), strict=True)
    )
