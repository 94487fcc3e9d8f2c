"""Run presets: `smoke` (tests), `cpu` (a laptop, offline) and `gpu` (Colab or a workstation).

Chosen by the environment variable HYENA_BOOK_PROFILE; unset, `gpu` when CUDA is present, else
`cpu`. `gpu` needs the Hugging Face hub (GPT-2, WikiText-103); where the hub does not answer,
get_profile gives `gpu-offline` instead (a mini GPT-2 pre-trained by the book on the offline corpus,
sized for a 16 GB T4) and says so in one line.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

ENV_VAR = "HYENA_BOOK_PROFILE"
HUB_PROFILE, OFFLINE_GPU_PROFILE = "gpu", "gpu-offline"
_told: set[str] = set()  # the fallback is announced once per process


@dataclass(frozen=True)
class Profile:
    """Sizes and budgets that one profile gives every chapter and command."""

    name: str
    description: str
    device: str  # "cpu" or "cuda"
    teacher: str  # a name known to hyena_lite.teachers.load_teacher
    corpus: str  # "offline" (the packaged public-domain corpus) or "wikitext-103" (hub)
    seq_len: int  # training and evaluation context, tokens
    batch_size: int  # sequences per optimiser step
    grad_accum: int  # micro-batches per step (batch_size / grad_accum sequences in memory at once)
    # The mini GPT-2 teacher pre-trained by the book when no pretrained teacher is used.
    teacher_layers: int
    teacher_width: int
    teacher_heads: int
    teacher_tokens: int  # pre-training budget of the mini teacher
    teacher_lr: float
    distill_tokens: int  # budget of each distillation stage, per student
    distill_lr: float
    eval_tokens: int  # validation tokens per evaluation (0: the whole split)
    bench_lengths: tuple[int, ...]  # sequence lengths of the profiling chapter
    bench_repeats: int
    seed: int = 0
    # Induction data in the mini teacher's pre-training (hyena_lite.teachers.pretraining_batches):
    # the fraction of sequences that repeat one span over and over, and the fraction of those whose
    # span is random ordinary tokens (as the copy probe's) rather than a span of the corpus.
    # 0: plain corpus windows.
    teacher_copy_fraction: float = 0.0
    teacher_copy_random: float = 0.0
    # The mini teacher's vocabulary: 0 is GPT-2's 50,257 tokens; K is GPT-2's BPE cut to the K
    # most frequent tokens of the corpus's train split (hyena_lite.trimmed_tokenizer), which every
    # student of the teacher shares. teacher_tied: the output head is the token embedding (GPT-2's
    # choice) or a matrix of its own.
    teacher_vocab: int = 0
    teacher_tied: bool = True
    # The mini teacher's schedule: None is cosine after the warm-up; f keeps the full rate until
    # the last fraction f of the steps (warmup-stable-decay), long enough for induction heads
    teacher_decay_fraction: float | None = None
    # Pre-train the mini teacher under bfloat16 autocast where the CPU has bf16 instructions
    # (on CUDA it always is)
    teacher_cpu_bf16: bool = False

    def replace(self, **changes) -> Profile:
        """A copy with some fields changed (for experiments in a chapter)."""
        return dataclasses.replace(self, **changes)


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        description="tiny configs and a few steps: proves the code runs, not that it works",
        device="cpu",
        teacher="mini-gpt2",
        corpus="offline",
        seq_len=64,
        batch_size=4,
        grad_accum=1,
        teacher_layers=2,
        teacher_width=64,
        teacher_heads=2,
        teacher_tokens=8_192,
        teacher_lr=3e-3,
        teacher_vocab=4096,  # as the cpu profile's teacher: the same code paths, in seconds
        teacher_tied=False,
        distill_tokens=4_096,
        distill_lr=3e-3,
        eval_tokens=4_096,
        bench_lengths=(64, 256),
        bench_repeats=2,
    ),
    "cpu": Profile(
        name="cpu",
        description=(
            "offline on a laptop: a mini GPT-2 teacher pre-trained on the corpus, then distilled"
        ),
        device="cpu",
        teacher="mini-gpt2",
        corpus="offline",
        # 128 tokens, 32 sequences a step: at 256 tokens and 16 sequences no teacher variant learned
        # to copy within 3,000 steps; at 128 and 32 seven of seven did by step 2,300
        # (results/teacher_copy_probe_h200.json)
        seq_len=128,
        batch_size=32,
        grad_accum=1,
        teacher_layers=4,
        # at equal CPU time (~4 min, one core) width 128 reached val loss 6.78, width 256 6.92
        teacher_width=128,
        teacher_heads=4,
        # GPT-2's BPE trimmed to 4,096 tokens (cpu_vocab_sweep_h200.json: at equal CPU time it
        # lowers validation bits per byte from 2.24 to 2.04), the head tied to the embedding, half
        # the rows repeated spans, the full learning rate until the last fifth of 2,400 steps:
        # copying forms near step 2,000 (teacher_copy_probe_h200.json); cosine decay over the same
        # 2,400 steps lowers the rate too soon and no run copied
        teacher_tokens=2_400 * 32 * 128,
        teacher_lr=2e-3,
        teacher_vocab=4096,
        teacher_tied=True,
        teacher_copy_fraction=0.5,
        teacher_copy_random=0.5,
        teacher_decay_fraction=0.2,
        teacher_cpu_bf16=True,
        distill_tokens=500_000,
        distill_lr=1e-3,
        eval_tokens=100_000,
        bench_lengths=(256, 512, 1024, 2048, 4096, 8192),
        bench_repeats=5,
    ),
    "gpu": Profile(
        name="gpu",
        description="Colab or a workstation GPU: gpt2 (124M) and WikiText-103 from the hub",
        device="cuda",
        teacher="gpt2",
        corpus="wikitext-103",
        seq_len=1024,
        batch_size=16,
        # GPT-2 124M KD peaks at 41 GiB whole, 12.8 GiB in micro-batches of 4: a 16 GB T4 fits
        grad_accum=4,
        teacher_layers=12,
        teacher_width=768,
        teacher_heads=12,
        teacher_tokens=0,
        teacher_lr=6e-4,
        distill_tokens=20_000_000,
        distill_lr=6e-4,
        eval_tokens=1_000_000,
        bench_lengths=(1024, 2048, 4096, 8192, 16384),
        bench_repeats=10,
    ),
    # The gpu profile where the hub does not answer: the cpu profile's offline path (a mini GPT-2
    # that the book pre-trains on the offline corpus, then distils) scaled for a GPU. The teacher
    # keeps GPT-2's architecture, so every chapter's GPT-2 code runs as written: 6 layers of width
    # 384 (30M parameters, 19M of them the embedding), pre-trained on 8M tokens. Micro-batches of
    # 8 x 512 tokens of this model need a fraction of a 16 GB T4. Measured per chapter by
    # scripts/run_book.py (hyena_lite/results/book_gpu_h200.json).
    "gpu-offline": Profile(
        name="gpu-offline",
        description=(
            "a GPU without the hub: a mini GPT-2 pre-trained by the book on the offline corpus"
        ),
        device="cuda",
        teacher="mini-gpt2",
        corpus="offline",
        seq_len=512,
        batch_size=16,
        grad_accum=2,
        teacher_layers=6,
        teacher_width=384,
        teacher_heads=6,
        teacher_tokens=8_000_000,
        teacher_lr=1e-3,
        distill_tokens=1_000_000,
        distill_lr=1e-3,
        eval_tokens=100_000,
        bench_lengths=(1024, 2048, 4096, 8192, 16384),
        bench_repeats=10,
    ),
}


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:  # pragma: no cover - torch is a dependency
        return False


def get_profile(name: str | None = None) -> Profile:
    """The profile called `name`, else the one named by $HYENA_BOOK_PROFILE, else gpu/cpu
    by hardware.

    `gpu` becomes `gpu-offline` where the Hugging Face hub does not answer (hyena_lite.hub), with
    one line that says so; PROFILES["gpu"] is the hub preset itself.
    """
    if name is None:
        name = os.environ.get(ENV_VAR) or ("gpu" if _cuda_available() else "cpu")
    key = name.strip().lower()
    if key not in PROFILES:
        raise ValueError(
            f"unknown profile {name!r}; valid profiles are {', '.join(PROFILES)} "
            f"(set {ENV_VAR} to one of them, or leave it unset for gpu/cpu by hardware)"
        )
    if key == HUB_PROFILE:
        from hyena_lite import hub

        if not hub.reachable():
            if key not in _told:
                _told.add(key)
                print(
                    f"the gpu profile needs the Hugging Face hub and {hub.describe()}: using the "
                    f"'{OFFLINE_GPU_PROFILE}' profile (a mini GPT-2 pre-trained on the offline "
                    "corpus); "
                    f"{hub.GET_IT}"
                )
            return PROFILES[OFFLINE_GPU_PROFILE]
    return PROFILES[key]
