"""scripts/attention_sink_probe.py on a tiny random Llama: the first token's norms per block, the
block where it leaves the others' scale, and the stream scaled after that block alone."""

from __future__ import annotations

import pytest
import torch
from tiny_models import random_llama


def test_norms_find_the_sink_block_and_the_scaling_touches_only_the_first_token(load_script):
    probe = load_script("attention_sink_probe")
    model = random_llama(64, 32, width=16, layers=3, seed=0).eval()
    windows = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(0))
    rows = probe.first_token_norms(model, windows)
    assert len(rows) == 2  # every block but the last, whose state is after the final norm
    assert all(0 < r["first_share"] < 1 and r["first"] > 0 and r["median"] > 0 for r in rows)
    fake = [{"first": 5.0, "median": 1.0}, {"first": 30.0, "median": 1.0}]
    assert probe.sink_block(fake) == 1
    with pytest.raises(ValueError, match="no block leaves the first token"):
        probe.sink_block(fake[:1])
    with torch.no_grad():
        plain = model(input_ids=windows, output_hidden_states=True).hidden_states[2]
        with probe.first_token_scaled(model, 1, 0.0):
            scaled = model(input_ids=windows, output_hidden_states=True).hidden_states[2]
        again = model(input_ids=windows, output_hidden_states=True).hidden_states[2]
    assert torch.count_nonzero(scaled[:, 0]) == 0  # the first token's stream after block 1
    assert torch.equal(scaled[:, 1:], plain[:, 1:])  # block 1's other tokens untouched
    assert torch.equal(again, plain)  # the hook is gone
