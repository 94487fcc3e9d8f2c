"""Tests of the Hyena students and the conversion, on tiny random teachers of each family
(offline)."""

from __future__ import annotations

import pytest
import torch
from tiny_models import random_gpt2
from transformers import (
    AutoModelForCausalLM,
    GPT2Model,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    OPTConfig,
    OPTForCausalLM,
)

from hyena_lite import HyenaMixer, HyenaOperator, convert, layer_mixers, parameter_table
from hyena_lite.models import STUDENT_FILTER_DEFAULTS, init_from_attention

VOCAB, CONTEXT, WIDTH = 61, 24, 16
FAMILIES = ("gpt2", "gpt_neox", "llama")


def tiny_teacher(family: str, seed: int = 0):
    """A two-layer random teacher of `family` (Llama with grouped-query attention: 4 query heads, 2
    kv heads)."""
    torch.manual_seed(seed)
    common = dict(
        vocab_size=VOCAB, bos_token_id=None, eos_token_id=None, pad_token_id=0
    )  # no eos: full-length generation
    if family == "gpt2":
        return random_gpt2(
            VOCAB, CONTEXT, WIDTH, seed=seed, bos_token_id=None, eos_token_id=None, pad_token_id=0
        ).eval()
    if family == "gpt_neox":
        config = GPTNeoXConfig(
            max_position_embeddings=CONTEXT,
            hidden_size=WIDTH,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=32,
            **common,
        )
        return GPTNeoXForCausalLM(config).eval()
    config = LlamaConfig(
        max_position_embeddings=CONTEXT,
        hidden_size=WIDTH,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=32,
        **common,
    )
    return LlamaForCausalLM(config).eval()


def ids(batch: int = 2, length: int = 12, seed: int = 1) -> torch.Tensor:
    return torch.randint(1, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


def teacher_qkvo(family: str, attention, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """q(x), k(x), v(x) [B, L, D] as the teacher's own forward computes them (k, v repeated per
    query head), and o."""
    if family == "gpt2":
        q, k, v = attention.c_attn(x).split(WIDTH, dim=2)
        return q, k, v, attention.c_proj
    if family == "gpt_neox":
        heads = attention.config.num_attention_heads
        qkv = attention.query_key_value(x).view(*x.shape[:2], heads, -1)
        q, k, v = (t.flatten(2) for t in qkv.chunk(3, dim=-1))
        return q, k, v, attention.dense
    groups, hd = attention.num_key_value_groups, attention.head_dim

    def expand(t: torch.Tensor) -> torch.Tensor:
        return t.view(*x.shape[:2], -1, hd).repeat_interleave(groups, dim=2).flatten(2)

    return (
        attention.q_proj(x),
        expand(attention.k_proj(x)),
        expand(attention.v_proj(x)),
        attention.o_proj,
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_no_hyena_layers_is_exactly_the_teacher(family):
    teacher = tiny_teacher(family)
    student = convert(teacher, hyena_layers=[])
    x = ids()
    assert type(student).__name__.startswith("Hyena")
    assert torch.equal(student(x).logits, teacher(x).logits)


@pytest.mark.parametrize("family", FAMILIES)
def test_copied_weights_equal_the_teachers_and_projections_map_k_q_v_o(family):
    teacher = tiny_teacher(family)
    student = convert(teacher)
    t_state, s_state = teacher.state_dict(), student.state_dict()
    shared = [k for k in s_state if k in t_state]
    own = sum(1 for k in s_state if ".operator." in k or ".modal_fit." in k)
    assert len(shared) == len(s_state) - own
    assert all(torch.equal(s_state[k], t_state[k]) for k in shared)
    x = torch.randn(2, 5, WIDTH)
    for attention, mixer in zip(layer_mixers(teacher), layer_mixers(student), strict=False):
        q, k, v, o = teacher_qkvo(family, attention, x)
        x1, x2, value = mixer.operator.in_proj(x).split(WIDTH, dim=2)
        assert torch.allclose(x1, k, atol=1e-6) and torch.allclose(x2, q, atol=1e-6)
        assert torch.allclose(value, v, atol=1e-6)
        assert torch.allclose(mixer.operator.out_proj(x), o(x), atol=1e-6)


def test_order_three_middle_gate_and_the_fresh_and_random_inits():
    teacher = tiny_teacher("gpt2")
    operator = layer_mixers(convert(teacher, order=3))[0].operator
    middle = slice(WIDTH, 2 * WIDTH)
    assert torch.equal(operator.in_proj.weight[middle], torch.zeros(WIDTH, WIDTH))
    assert torch.equal(operator.in_proj.bias[middle], torch.ones(WIDTH))
    random = convert(teacher, init="random")
    assert set(random.state_dict()) == set(convert(teacher).state_dict())
    assert not torch.equal(random.transformer.wte.weight, teacher.transformer.wte.weight)
    torch.manual_seed(5)
    fresh = convert(teacher, init="fresh")
    torch.manual_seed(5)
    random = convert(teacher, init="random")  # the same random numbers: its mixers are fresh's
    assert torch.equal(fresh.transformer.wte.weight, teacher.transformer.wte.weight)
    assert all(
        torch.equal(a, b)
        for a, b in zip(
            layer_mixers(fresh)[0].parameters(), layer_mixers(random)[0].parameters(), strict=False
        )
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_forward_backward_reaches_every_hyena_parameter(family):
    student = convert(tiny_teacher(family)).train()
    x = ids()
    loss = student(input_ids=x, labels=x).loss
    loss.backward()
    assert torch.isfinite(loss)
    hyena = [(n, p) for n, p in student.named_parameters() if ".operator." in n]
    assert hyena and all(p.grad is not None and torch.isfinite(p.grad).all() for _, p in hyena)
    assert sum(float(p.grad.abs().sum()) for _, p in hyena) > 0


@pytest.mark.parametrize("family", FAMILIES)
def test_save_and_auto_load_give_identical_logits(family, tmp_path):
    student = convert(tiny_teacher(family), hyena_layers=[1])
    student.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    x = ids()
    assert type(loaded) is type(student)
    assert loaded.config.hyena_layers == [1]
    assert torch.equal(loaded(x).logits, student(x).logits)


@pytest.mark.parametrize("family", FAMILIES)
def test_student_is_causal(family):
    student = convert(tiny_teacher(family), hyena_layers=[0])  # a hybrid: Hyena, then attention
    x = ids(batch=1, length=16)
    changed = x.clone()
    changed[0, 9:] = (changed[0, 9:] + 7) % VOCAB
    before, after = student(x).logits, student(changed).logits
    assert torch.allclose(before[:, :9], after[:, :9], atol=1e-5)
    assert not torch.allclose(before[:, 9:], after[:, 9:], atol=1e-3)


@pytest.mark.parametrize("family", FAMILIES)
def test_generate_greedy_matches_argmax_and_sampling_is_seeded(family):
    student = convert(tiny_teacher(family))
    prompt = ids(batch=1, length=5)
    out = student.generate(
        prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=6, do_sample=False
    )
    expected = prompt
    for _ in range(6):
        expected = torch.cat([expected, student(expected).logits[:, -1:].argmax(-1)], dim=1)
    assert torch.equal(out, expected)

    def sample(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        return student.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            max_new_tokens=6,
            do_sample=True,
            top_k=10,
        )

    first = sample(3)
    assert first.shape == (1, 11) and torch.equal(first, sample(3))


@pytest.mark.parametrize("family", FAMILIES)
def test_left_and_right_padding_give_each_sequence_its_own_logits(family):
    student = convert(tiny_teacher(family))
    long, short = ids(batch=1, length=10, seed=2)[0], ids(batch=1, length=6, seed=3)[0]
    alone = [student(s[None]).logits[0] for s in (long, short)]
    pad, ones, zeros = torch.zeros(4, dtype=torch.long), torch.ones(6), torch.zeros(4)
    for side in ("left", "right"):
        padded = torch.cat([pad, short] if side == "left" else [short, pad])
        mask = torch.stack(
            [torch.ones(10), torch.cat([zeros, ones] if side == "left" else [ones, zeros])]
        )
        logits = student(input_ids=torch.stack([long, padded]), attention_mask=mask.long()).logits
        assert torch.allclose(logits[0], alone[0], atol=1e-5)
        valid = logits[1, 4:] if side == "left" else logits[1, :6]
        assert torch.allclose(valid, alone[1], atol=1e-5), side


def test_batched_left_padded_generation_equals_one_prompt_at_a_time():
    student = convert(tiny_teacher("gpt2"))
    long, short = ids(batch=1, length=7, seed=4)[0], ids(batch=1, length=4, seed=5)[0]
    batch = torch.stack([long, torch.cat([torch.zeros(3, dtype=torch.long), short])])
    mask = torch.ones_like(batch)
    mask[1, :3] = 0
    out = student.generate(batch, attention_mask=mask, max_new_tokens=4, do_sample=False)
    one = student.generate(
        short[None],
        attention_mask=torch.ones(1, 4, dtype=torch.long),
        max_new_tokens=4,
        do_sample=False,
    )
    assert torch.equal(out[1, 3:], one[0])


def test_labels_give_the_loss_also_with_left_padding():
    student = convert(tiny_teacher("llama"))
    x = ids(batch=1, length=8)
    plain = student(input_ids=x, labels=x).loss
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), x], dim=1)
    mask = torch.cat([torch.zeros(1, 3), torch.ones(1, 8)], dim=1).long()
    labels = padded.clone()
    labels[:, :4] = -100  # the pads, and the first token, which only a pad could predict
    assert torch.allclose(
        student(input_ids=padded, attention_mask=mask, labels=labels).loss, plain, atol=1e-5
    )


def test_hybrid_keeps_attention_where_asked_and_the_table_counts_it():
    teacher = tiny_teacher("gpt2")
    student = convert(teacher, hyena_layers=[1])
    mixers = layer_mixers(student)
    assert not isinstance(mixers[0], HyenaMixer) and isinstance(mixers[1], HyenaMixer)
    table = parameter_table(teacher, student)
    hyena = sum(p.numel() for p in mixers[1].parameters())
    assert table.loc["total", "teacher"] == sum(p.numel() for p in teacher.parameters())
    assert table.loc["total", "student"] == sum(p.numel() for p in student.parameters())
    assert table.loc["total", "new"] == hyena == table.loc["layer  1 mixer", "student"]
    assert (
        table.loc["layer  0 mixer", "mixer"] == "attention"
        and table.loc["layer  1 mixer", "mixer"] == "Hyena"
    )


def test_dtype_and_mode_follow_the_teacher():
    teacher = tiny_teacher("llama")
    freqs = teacher.model.rotary_emb.inv_freq.clone()
    teacher.to(torch.bfloat16)
    teacher.model.rotary_emb.inv_freq = (
        freqs  # float32, as from_pretrained(dtype=torch.bfloat16) keeps it
    )
    student = convert(teacher)
    assert next(student.parameters()).dtype == torch.bfloat16 and not student.training
    assert student.model.rotary_emb.inv_freq.dtype == teacher.model.rotary_emb.inv_freq.dtype
    assert torch.equal(convert(teacher, hyena_layers=[])(ids()).logits, teacher(ids()).logits)
    assert torch.isfinite(student(ids()).logits.float()).all()


def test_errors_say_what_is_wrong():
    teacher = tiny_teacher("gpt2")
    with pytest.raises(ValueError, match=r"not supported.*GPT-2.*GPT-NeoX.*Llama"):
        convert(
            OPTForCausalLM(
                OPTConfig(
                    vocab_size=VOCAB,
                    hidden_size=WIDTH,
                    num_hidden_layers=1,
                    ffn_dim=32,
                    num_attention_heads=2,
                    word_embed_proj_dim=WIDTH,
                )
            )
        )
    with pytest.raises(ValueError, match="not supported"):
        convert(GPT2Model(teacher.config))
    with pytest.raises(ValueError, match="init="):
        convert(teacher, init="teachr")
    with pytest.raises(ValueError, match=r"distinct layer indices in 0\.\.1"):
        convert(teacher, hyena_layers=[2])
    with pytest.raises(ValueError, match="distinct"):
        convert(teacher, hyena_layers=[0, 0])
    with pytest.raises(TypeError, match="unknown Hyena argument"):
        convert(teacher, lmax=8)
    student = convert(teacher, l_max=8)
    with pytest.raises(ValueError, match=r"exceeds the filter length 8.*l_max=12"):
        student(ids(length=12))
    with pytest.raises(ValueError, match="padding between tokens"):
        student(ids(batch=1, length=4), attention_mask=torch.tensor([[1, 0, 1, 1]]))
    with pytest.raises(ValueError, match="already a Hyena student"):
        convert(student)


def test_importing_hyena_lite_registers_the_students():
    from transformers import AutoConfig

    expected = {
        "hyena_gpt2": "HyenaGPT2LMHeadModel",
        "hyena_gpt_neox": "HyenaGPTNeoXForCausalLM",
        "hyena_llama": "HyenaLlamaForCausalLM",
    }
    for model_type, name in expected.items():
        config = AutoConfig.for_model(
            model_type,
            num_hidden_layers=1,
            hidden_size=WIDTH,
            num_attention_heads=2,
            vocab_size=VOCAB,
            intermediate_size=32,
            hyena_layers=[0],
            hyena_l_max=8,
        )
        model = AutoModelForCausalLM.from_config(config)
        assert type(model).__name__ == name and isinstance(layer_mixers(model)[0], HyenaMixer)


def test_gpt2_student_loss_is_named_so_labels_log_nothing(capfd):
    student = convert(tiny_teacher("gpt2"))
    x = ids()
    student(input_ids=x, labels=x)
    assert student.loss_type == "ForCausalLM"
    assert "loss_type" not in capfd.readouterr().err


@pytest.mark.parametrize("order", [2, 3])
def test_seeding_from_attention_keeps_the_teachers_device(order) -> None:
    # the constant gate and missing biases are made where the teacher's weights are (a GPU, here
    # the meta device): made on the CPU they could not be concatenated with them
    d = 8
    operator = HyenaOperator(d, l_max=16, order=order).to("meta")
    weight = torch.empty(d, d, device="meta")
    projections = {name: (weight, None) for name in ("q", "k", "v", "o")}
    init_from_attention(operator, projections)
    assert operator.in_proj.weight.device.type == "meta"


def test_convert_passes_operator_and_filter_settings_through():
    teacher = tiny_teacher("gpt2")
    student = convert(teacher, filter_order=8, short_filter_order=5, order=3, emb_dim=5)
    operator = layer_mixers(student)[0].operator
    assert operator.order == 3 and operator.short_filter.kernel_size == (5,)
    assert operator.filter_fn.head.in_features == 8 and operator.filter_fn.bands == 2
    assert student.config.hyena_filter_args == {"emb_dim": 5}
    assert student(ids()).logits.shape[-1] == teacher.config.vocab_size


def test_a_student_gets_16_bands_unless_told_and_an_older_config_keeps_its_one():
    teacher = tiny_teacher("gpt2")
    student = convert(teacher)
    assert layer_mixers(student)[0].operator.filter_fn.bands == 16
    assert student.config.hyena_filter_args == STUDENT_FILTER_DEFAULTS == {"emb_dim": 33}
    assert convert(teacher, emb_dim=3).config.hyena_filter_args == {"emb_dim": 3}
    older = student.config.to_dict() | {"hyena_filter_args": None}  # saved before the default
    rebuilt = type(student)(type(student.config).from_dict(older))
    assert layer_mixers(rebuilt)[0].operator.filter_fn.bands == 1
