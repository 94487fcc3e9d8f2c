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
Here the CE student wins because the mini teacher saw only 0.7M tokens, fewer than the half
million fresh tokens a student trains on plus what it inherits: the data knows more than the
teacher. Give the teacher far more pre-training than a student's budget (a teacher trained on
trillions of tokens, such as SmolLM2-135M in chapter 11, or this teacher pre-trained on ten
times more text), keep the students' token budget fixed, and compare the validation perplexity
of `ce` and `best` again, plus their top-1 agreement with the teacher (chapter 8). If the
teacher knows more than the budget can teach, `best` should end below `ce`."""
