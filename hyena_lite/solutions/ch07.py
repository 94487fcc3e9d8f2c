"""Chapter 7's solutions: the KD loss and its gradient, reading the temperature table, and the
model answer to the question about a stronger teacher."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float = 1.0,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """T^2 KL(softmax(t/T) || softmax(s/T)) over the vocabulary, averaged over kept positions."""
    log_p = F.log_softmax(teacher_logits / temperature, -1)
    log_q = F.log_softmax(student_logits / temperature, -1)
    per_position = (log_p.exp() * (log_p - log_q)).sum(-1) * temperature**2
    if mask is None:
        return per_position.mean()
    return (per_position * mask).sum() / mask.sum()


def kd_gradient(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """The closed-form gradient of the KD loss: T^2 from the loss times 1/T from the chain rule."""
    n = student_logits.shape[0] * student_logits.shape[1]
    q = (student_logits / temperature).softmax(-1)
    p = (teacher_logits / temperature).softmax(-1)
    return temperature * (q - p) / n


def gradient_fall(rows: list[dict]) -> float:
    """The table's T^2 x KL gradient norm at the lowest temperature over that at the highest."""
    scaled = [row["gradient norm, T^2 x KL"] for row in sorted(rows, key=lambda r: r["T"])]
    return scaled[0] / scaled[-1]


gradient_fall_why = """\
The 1/T argument is an expansion for large T: q^T - p^T shrinks like 1/T only once T is large
against the gaps between the logits, so that softmax(z/T) is close to uniform plus a linear
correction. A language model's logits span tens of nats, so at T = 2, 4 or 8 the softened
distributions are still far from that regime and q^T - p^T shrinks faster than 1/T. The T^2
factor removes the 1/T^2 that the argument predicts, and what is left is that extra fall."""

strong_teacher = """\
Keep the teacher, the tokens and the recipes fixed and vary only what one seed hides: train
`best` and `ce` with three to five seeds each (the seed of the batch order and of the new
mixers), then compare the mean validation perplexity of the two against the spread of the seeds.
If the gap (about 2 percent here) is larger than a few standard errors, the outputs pay. Two
cheaper checks point the same way: the top-1 agreement with the teacher (chapter 8), which KD
raises and CE lowers, and a budget sweep (a quarter, half and all of the tokens), since the
outputs should pay most when the data is scarce. To see the balance flip, vary the one thing
the two runs differ in: the teacher's pre-training (0.7M tokens gave `ce` the win, 9.8M the
distilled students)."""
