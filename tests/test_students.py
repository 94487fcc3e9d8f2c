"""The student classes' own parts: their config checks, the Hyena mixer's refusals, left padding
handled by rotating rows, and the families the library knows."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertModel, DynamicCache, GPT2Config, GPT2LMHeadModel

from hyena_lite.models import convert
from hyena_lite.students import (
    HyenaMixer,
    _left_pad_shifts,
    _roll_rows,
    check_hyena_config,
    family_of,
    hyena_l_max,
    kv_cache_argument,
    layer_mixers,
)


def _gpt2(layers: int = 2) -> GPT2LMHeadModel:
    torch.manual_seed(0)
    config = GPT2Config(n_layer=layers, n_embd=16, n_head=2, vocab_size=50, n_positions=32)
    return GPT2LMHeadModel(config).eval()


def test_hyena_layers_must_be_distinct_indices_of_the_model():
    student = convert(_gpt2(), hyena_layers=[1])
    check_hyena_config(student.config)
    for bad in ([2], [1, 1], [-1]):
        student.config.hyena_layers = bad
        with pytest.raises(ValueError, match="must list distinct layer indices in 0..1"):
            check_hyena_config(student.config)


def test_l_max_defaults_to_the_positions_of_the_model():
    student = convert(_gpt2())
    assert hyena_l_max(student.config) == 32
    assert hyena_l_max(convert(_gpt2(), l_max=8).config) == 8


def test_mixers_are_hyena_only_where_asked_and_refuse_caches_and_long_inputs():
    student = convert(_gpt2(), hyena_layers=[1], l_max=8)
    attention, hyena = layer_mixers(student)
    assert not isinstance(attention, HyenaMixer) and isinstance(hyena, HyenaMixer)
    with pytest.raises(ValueError, match="make the cache from the student's config"):
        hyena(torch.randn(1, 4, 16), past_key_values=DynamicCache())
    with pytest.raises(ValueError, match="exceeds the filter length 8"):
        hyena(torch.randn(1, 9, 16))
    out, nothing = hyena(torch.randn(1, 4, 16))
    assert out.shape == (1, 4, 16) and nothing is None


def test_left_pad_shifts_count_leading_pads_and_refuse_holes():
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 0], [1, 1, 1, 1]])
    assert _left_pad_shifts(mask).tolist() == [2, 0, 0]
    assert _left_pad_shifts(torch.ones(2, 4)) is None
    with pytest.raises(ValueError, match="rows \\[0\\] have padding between tokens"):
        _left_pad_shifts(torch.tensor([[1, 0, 1, 1]]))


def test_roll_rows_rotates_each_row_by_its_own_shift():
    x = torch.arange(8).view(2, 4)
    assert _roll_rows(x, torch.tensor([1, -1])).tolist() == [[1, 2, 3, 0], [7, 4, 5, 6]]


def test_family_of_names_what_is_supported():
    assert family_of(_gpt2()).attention == "attn"
    assert family_of(convert(_gpt2())).name == "GPT-2"
    bert = BertModel(BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2))
    with pytest.raises(ValueError, match="is not supported; hyena_lite converts these"):
        family_of(bert)


def test_kv_cache_argument_is_one_the_model_accepts():
    name = kv_cache_argument(_gpt2())
    assert name in ("cache", "past_key_values")
