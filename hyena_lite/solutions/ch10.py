"""Chapter 10's solutions: a one-mode recurrence, the number of states a filter needs, the size
of GPT-2's key-value cache, and the model answer to choosing a decoder."""

from __future__ import annotations

import torch


def one_mode(z: torch.Tensor, pole: complex, residue: complex) -> torch.Tensor:
    """y_t = Re(residue * x) with the state x before z_t is added; then x = pole * x + z_t."""
    x, out = 0j, []
    for zt in z.tolist():
        out.append((residue * x).real)
        x = pole * x + zt
    return torch.tensor(out, dtype=torch.float64)


def states_needed(hsv: torch.Tensor, tolerance: float) -> int:
    """The number of Hankel singular values at or above tolerance times the largest."""
    return int((hsv >= tolerance * hsv[0]).sum())


def kv_cache_mib(
    layers: int = 12, width: int = 768, context: int = 32768, batch: int = 16, bytes_: int = 2
) -> float:
    """Keys and values (2) of every layer, position and sequence, width numbers each, in bf16."""
    return 2 * layers * width * context * batch * bytes_ / 2**20


choose_decoder = """\
Almost all the work is reading the prompt; eight new tokens cost little whatever the decoder.
`full` re-runs the whole 100K-token context for every new token: eight passes over the prompt,
the one to avoid. `cached` gives exactly the convolution's answers and keeps the prompt's
inputs, memory that grows linearly with the context like a key-value cache, affordable for one
request at a time. `recurrent` keeps a state of fixed size and costs O(r) per token, but it
answers with the fitted filters, and this chapter fitted them only up to the training length.
So: `cached` here. Before using `recurrent` at this length (worth it when many long sequences
must be held at once), fit the filters to 100K taps and measure the fit errors and the
perplexity gap at that length, as `quality_sweep` does."""
