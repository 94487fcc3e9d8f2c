"""Recall diagnosis: previous-token and induction scores from attention patterns, and copy accuracy,
on a hand-built model whose scores are known and on tiny random GPT-2 and Llama models."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from hyena_lite import recall
from hyena_lite.data import gpt2_tokenizer
from tests.tiny_models import KnownAttention, save_tiny_gpt2


@pytest.fixture(scope="module")
def tokenizer():
    return gpt2_tokenizer()


def test_scores_of_hand_set_attention_are_the_known_ones(tokenizer):
    length = 16
    scores = recall.head_scores(KnownAttention(len(tokenizer)), tokenizer, length=length, n=3)
    total = 2 * length + 1  # start token and two copies
    # layer 0 looks back one position; layer 1 is an induction head that otherwise looks at the
    # start (only position 1's previous position); layer 2 spreads 1/(t+1) over positions 0..t
    uniform_previous = sum(1 / (t + 1) for t in range(1, total)) / (total - 1)
    uniform_induction = sum(1 / (t + 1) for t in range(length + 1, total)) / length
    assert scores["previous_token"] == pytest.approx([1.0, 1 / (total - 1), uniform_previous])
    assert scores["induction"] == pytest.approx([0.0, 1.0, uniform_induction])
    assert len(scores["induction_heads"][1]) == 1
    assert recall.top_layers(scores["induction"], 2) == [1, 2]


def test_copy_accuracy_of_a_perfect_copier_and_a_random_model(tokenizer, tmp_path):
    assert recall.copy_accuracy(KnownAttention(len(tokenizer)), tokenizer, n=2) == 1.0
    from transformers import GPT2LMHeadModel

    tiny = GPT2LMHeadModel.from_pretrained(save_tiny_gpt2(tmp_path / "t", positions=320)).eval()
    assert recall.copy_accuracy(tiny, tokenizer, n=2) < 0.05


def test_scores_of_real_models_are_probabilities_per_layer_and_head(tokenizer, tmp_path):
    from transformers import GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel.from_pretrained(save_tiny_gpt2(tmp_path / "g", layers=3)).eval()
    torch.manual_seed(0)
    llama = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            max_position_embeddings=64,
            bos_token_id=tokenizer.eos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        ),
    ).eval()
    llama.set_attn_implementation("sdpa")
    for model, layers in ((gpt2, 3), (llama, 2)):
        scores = recall.head_scores(model, tokenizer, length=8, n=2)
        assert len(scores["previous_token"]) == layers == len(scores["induction_heads"])
        assert all(len(heads) == 2 for heads in scores["previous_token_heads"])
        flat = [
            s for heads in scores["induction_heads"] + scores["previous_token_heads"] for s in heads
        ]
        assert all(0.0 <= s <= 1.0 for s in flat)
    assert llama.config._attn_implementation == "sdpa"  # switched to eager for the call only


def test_bad_arguments_say_what_is_wrong(tokenizer):
    with pytest.raises(ValueError, match="at least 2 tokens"):
        recall.head_scores(KnownAttention(len(tokenizer)), tokenizer, length=1)
    with pytest.raises(ValueError, match=r"k must be in \[1, 3\]"):
        recall.top_layers([0.1, 0.2, 0.3], 4)

    class NoWeights(KnownAttention):
        def forward(self, input_ids, output_attentions=False, **kwargs):
            out = super().forward(input_ids, output_attentions, **kwargs)
            out.attentions = (out.attentions[0], None, out.attentions[2])
            return out

    with pytest.raises(ValueError, match="not a Hyena student"):
        recall.head_scores(NoWeights(len(tokenizer)), tokenizer, length=4)
