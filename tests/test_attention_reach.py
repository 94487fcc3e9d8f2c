"""local_attention: a window as long as the sequence changes nothing, a short one bounds how far
back the logits can see (n_layers x (window - 1) positions, and the sink), global layers see
everything, and the model comes back as it was; on tiny random Llama and GPT-2 models, both
kernels."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2LMHeadModel, LlamaForCausalLM

from hyena_lite.attention_reach import attention_layers, local_attention, window_band
from tests.tiny_models import random_gpt2, random_llama

VOCAB, LAYERS, LENGTH = 64, 3, 40


def tiny_llama() -> LlamaForCausalLM:
    return random_llama(VOCAB, 128, layers=LAYERS, bos_token_id=0, eos_token_id=1, pad_token_id=1)


def tiny_gpt2() -> GPT2LMHeadModel:
    return random_gpt2(VOCAB, 128, layers=LAYERS, bos_token_id=0, eos_token_id=1).eval()


MODELS = {"llama": tiny_llama, "gpt2": tiny_gpt2}


@pytest.fixture(params=[(m, k) for m in MODELS for k in ("sdpa", "eager")], ids=str)
def model(request):
    name, kernel = request.param
    built = MODELS[name]()
    built.set_attn_implementation(kernel)
    return built


def tokens(seed: int = 0, length: int = LENGTH) -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, length), generator=torch.Generator().manual_seed(seed))


@torch.inference_mode()
def logits(model, ids: torch.Tensor) -> torch.Tensor:
    return model(input_ids=ids).logits


def test_a_window_as_long_as_the_sequence_changes_nothing(model):
    ids = tokens()
    before = logits(model, ids)
    with local_attention(model, LENGTH):
        assert torch.equal(logits(model, ids), before)
    with local_attention(model, 4, global_layers=range(LAYERS)):
        assert torch.equal(logits(model, ids), before)
    with local_attention(model, 4):
        assert not torch.allclose(logits(model, ids), before)


def test_local_layers_see_exactly_layers_times_window_minus_one_back(model):
    window, t = 4, LENGTH - 1
    reach = LAYERS * (window - 1)  # each layer looks window - 1 positions further back
    ids = tokens()
    far = ids.clone()
    far[:, : t - reach] = tokens(seed=1)[:, : t - reach]  # every token out of reach changed
    edge = ids.clone()
    edge[:, t - reach] = (ids[:, t - reach] + 1) % VOCAB  # the furthest token within reach
    with local_attention(model, window):
        local, local_far, local_edge = logits(model, ids), logits(model, far), logits(model, edge)
    assert torch.allclose(local_far[:, t], local[:, t], atol=1e-5)
    assert not torch.allclose(local_edge[:, t], local[:, t], atol=1e-5)
    for global_layer in range(LAYERS):  # one layer that looks everywhere reaches the far tokens
        with local_attention(model, window, global_layers=[global_layer]):
            assert not torch.allclose(logits(model, far)[:, t], logits(model, ids)[:, t])


def test_a_sink_shows_the_first_positions_and_nothing_else_out_of_reach(model):
    window, sink, t = 4, 2, LENGTH - 1
    reach = LAYERS * (window - 1)
    ids = tokens()
    middle = ids.clone()  # changed between the sink and the reach
    middle[:, sink : t - reach] = tokens(seed=1)[:, sink : t - reach]
    first = ids.clone()
    first[:, 0] = (ids[:, 0] + 1) % VOCAB
    with local_attention(model, window, sink=sink):
        local = logits(model, ids)
        assert torch.allclose(logits(model, middle)[:, t], local[:, t], atol=1e-5)
        assert not torch.allclose(logits(model, first)[:, t], local[:, t], atol=1e-5)


def test_a_window_of_one_is_each_token_on_its_own():
    llama = tiny_llama()  # rotary positions: a token that sees only itself ignores its position
    ids = tokens()
    with local_attention(llama, 1):
        together = logits(llama, ids)
    alone = torch.cat([logits(llama, ids[:, t : t + 1]) for t in range(LENGTH)], dim=1)
    assert torch.allclose(together, alone, atol=1e-5)


def test_both_kernels_agree_inside_the_context():
    out = {}
    for kernel in ("sdpa", "eager"):
        llama = tiny_llama()
        llama.set_attn_implementation(kernel)
        with local_attention(llama, 5, global_layers=[1]):
            out[kernel] = logits(llama, tokens())
    assert torch.allclose(out["sdpa"], out["eager"], atol=1e-5)


def test_cached_generation_sees_the_same_window_as_a_full_pass(model):
    prompt, new = tokens()[:, :20], 6
    model.generation_config.eos_token_id = None  # no early stop: every row gets `new` tokens
    with local_attention(model, 3, global_layers=[2]), torch.inference_mode():
        cached = model.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            max_new_tokens=new,
            do_sample=False,
            use_cache=True,
            pad_token_id=0,
        )
        ids = prompt
        for _ in range(new):  # greedy, one full forward pass per token
            ids = torch.cat([ids, logits(model, ids)[:, -1:].argmax(-1)], dim=1)
    assert torch.equal(cached, ids)


def test_the_model_is_restored_after_the_context_and_after_an_error(model):
    ids = tokens()
    kernel, before = model.config._attn_implementation, logits(model, ids)
    with local_attention(model, 2, global_layers=[0]):
        assert model.config._attn_implementation != kernel
    assert model.config._attn_implementation == kernel
    assert torch.equal(logits(model, ids), before)
    with pytest.raises(KeyError), local_attention(model, 2):
        raise KeyError("inside")
    assert model.config._attn_implementation == kernel
    assert torch.equal(logits(model, ids), before)


def test_bad_windows_layers_and_models_are_refused_with_a_reason(model):
    for window in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="window must be"), local_attention(model, window):
            pass
    for sink in (-1, 1.5):
        with pytest.raises(ValueError, match="sink must be"), local_attention(model, 4, sink=sink):
            pass
    for layers in ([LAYERS], [-1], ["0"]):
        with pytest.raises(ValueError, match="unknown attention layers"):
            with local_attention(model, 4, global_layers=layers):
                pass
    with pytest.raises(RuntimeError, match="already inside"), local_attention(model, 4):
        with local_attention(model, 4):
            pass
    assert model.config._attn_implementation in ("sdpa", "eager")
    with pytest.raises(ValueError, match="not a transformers PreTrainedModel"):
        with local_attention(torch.nn.Linear(2, 2), 4):
            pass


def test_unsupported_kernels_and_modules_are_named():
    gpt2 = tiny_gpt2()
    gpt2.config._attn_implementation_internal = "flex_attention"
    with pytest.raises(ValueError, match="set_attn_implementation\\('sdpa'\\)"):
        with local_attention(gpt2, 4):
            pass
    upcast = tiny_gpt2()
    upcast.config.reorder_and_upcast_attn = True
    upcast.set_attn_implementation("eager")
    with pytest.raises(ValueError, match="reorder_and_upcast_attn"), local_attention(upcast, 4):
        pass
    with pytest.raises(ValueError, match="no causal attention modules"):
        attention_layers(torch.nn.Sequential(torch.nn.Linear(2, 2)))


def test_the_band_keeps_the_last_window_positions_of_each_query():
    band = window_band(q_length=2, kv_length=5, window=3)  # queries are positions 3 and 4
    assert band.tolist() == [
        [False, True, True, True, False],
        [False, False, True, True, True],
    ]
    assert window_band(q_length=3, kv_length=3, window=1, sink=1).tolist() == [
        [True, False, False],
        [True, True, False],
        [True, False, True],
    ]
