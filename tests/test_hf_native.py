"""Students as native Hugging Face models: generate() on the recurrent state kept in the
transformers Cache, beam search, the modal fit saved with the weights, and portable folders that
load with trust_remote_code in a process that never imports hyena_lite."""

import json
import os
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel, pipeline
from transformers.cache_utils import DynamicLayer, LinearAttentionLayer

import hyena_lite.decoding
import hyena_lite.hf_cache
from hyena_lite.generation import generate as library_generate
from hyena_lite.hf_cache import HyenaCache, HyenaCacheLayer, fit_recurrent_states
from hyena_lite.models import convert
from hyena_lite.students import kv_cache_argument
from tests.tiny_models import save_tiny_gpt2

VOCAB = 97


def _student(hyena_layers=None, seed: int = 0):
    torch.manual_seed(seed)
    config = GPT2Config(
        n_layer=3, n_embd=32, n_head=2, vocab_size=VOCAB, n_positions=64, bos_token_id=0
    )
    return convert(GPT2LMHeadModel(config).eval(), hyena_layers=hyena_layers).eval()


def _greedy(model, ids, new: int, use_cache: bool, **kwargs):
    return model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=new,
        min_new_tokens=new,
        do_sample=False,
        use_cache=use_cache,
        pad_token_id=0,
        **kwargs,
    )


def _refuse_fitting(monkeypatch):
    def refuse(*_args, **_kwargs):
        raise AssertionError("the modal fit was computed again")

    monkeypatch.setattr(hyena_lite.decoding, "fit_modal", refuse)


@pytest.mark.parametrize("layers", [None, [0, 2]], ids=["all-hyena", "hybrid"])
def test_cached_generate_equals_full_recompute_and_the_library_decoder(layers):
    student = _student(layers)
    ids = torch.randint(1, VOCAB, (2, 7))
    full = _greedy(student, ids, 12, use_cache=False)
    cached = _greedy(student, ids, 12, use_cache=True)
    assert torch.equal(cached, full)
    fits = fit_recurrent_states(student)  # the fit generate() stored
    library = library_generate(student, ids, 12, mode="recurrent", fits=fits).tokens
    assert torch.equal(cached[:, ids.shape[1] :], library)


def test_short_filters_are_fitted_with_the_modes_they_can_hold():
    torch.manual_seed(1)
    config = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=VOCAB, n_positions=64)
    student = convert(GPT2LMHeadModel(config).eval(), l_max=16).eval()  # 16 taps: 7 modes
    ids = torch.randint(1, VOCAB, (1, 6))
    cached = _greedy(student, ids, 8, use_cache=True)
    assert torch.equal(cached, _greedy(student, ids, 8, use_cache=False))


def test_the_cache_grows_only_for_attention_layers():
    student = _student([0, 2])
    ids = torch.randint(1, VOCAB, (1, 5))
    sizes = {}
    for new in (3, 9):
        out = _greedy(student, ids, new, True, return_dict_in_generate=True)
        cache = out["cache"] if "cache" in out else out["past_key_values"]  # 5.2x renamed it
        kinds = [type(layer) for layer in cache.layers]
        assert kinds == [HyenaCacheLayer, DynamicLayer, HyenaCacheLayer]
        hyena = cache.layers[0]
        sizes[new] = (
            cache.layers[1].keys.shape[-2],
            [tuple(t.shape) for t in (*hyena.conv_states.values(), hyena.recurrent_states[0])],
        )
        assert int(cache.get_seq_length(0)) == ids.shape[1] + new - 1
    assert sizes[3][0] + 6 == sizes[9][0]  # the key-value cache grew by the 6 extra tokens
    assert sizes[3][1] == sizes[9][1]  # the Hyena states did not


def test_beam_search_on_the_cache_equals_beam_search_by_recompute():
    student = _student([1])
    ids = torch.randint(1, VOCAB, (2, 6))
    beams = {
        use_cache: _greedy(student, ids, 8, use_cache, num_beams=3, num_return_sequences=2)
        for use_cache in (False, True)
    }
    assert beams[True].shape == (4, 14)
    assert torch.equal(beams[True], beams[False])


@pytest.mark.parametrize("layers", [None, [1]], ids=["all-hyena", "hybrid"])
def test_left_padded_rows_decode_on_the_cache_as_each_prompt_alone(layers):
    student = _student(layers)
    long, short = torch.randint(1, VOCAB, (7,)), torch.randint(1, VOCAB, (4,))
    batch = torch.stack([long, torch.cat([torch.zeros(3, dtype=torch.long), short])])
    mask = torch.ones_like(batch)
    mask[1, :3] = 0
    out = student.generate(
        batch, attention_mask=mask, max_new_tokens=6, do_sample=False, use_cache=True
    )
    for row, prompt in ((0, long), (1, short)):
        alone = _greedy(student, prompt[None], 6, use_cache=False)
        assert torch.equal(out[row, 7 - len(prompt) :], alone[0])


def test_the_modal_fit_is_saved_and_loaded_not_refit(tmp_path, monkeypatch):
    student = _student([0, 2])
    ids = torch.randint(1, VOCAB, (1, 6))
    assert sorted(fit_recurrent_states(student)) == [0, 2]
    before = _greedy(student, ids, 10, use_cache=True)
    student.save_pretrained(tmp_path)
    _refuse_fitting(monkeypatch)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert torch.equal(_greedy(loaded, ids, 10, use_cache=True), before)
    as_bf16 = loaded.to(torch.bfloat16)  # the fit stays float32: poles near 1 need it
    assert as_bf16.transformer.h[0].attn.modal_fit.poles.dtype == torch.float32


def test_a_stale_fit_is_fitted_again(monkeypatch):
    student = _student()
    fit_recurrent_states(student)
    with torch.no_grad():
        for p in student.transformer.h[1].attn.operator.filter_fn.parameters():
            if p.dim() >= 2:
                p.mul_(1.1)  # the filters change: the fit no longer belongs to them
    calls = []
    real = hyena_lite.decoding.fit_modal
    monkeypatch.setattr(
        hyena_lite.decoding, "fit_modal", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    fit_recurrent_states(student)
    assert len(calls) == 1  # layer 1 only: the others still hold their fits
    fit_recurrent_states(student)
    assert len(calls) == 1


def test_pipeline_generates_on_the_cache(tmp_path, monkeypatch):
    from transformers import AutoTokenizer

    folder = save_tiny_gpt2(tmp_path / "teacher", layers=2)
    teacher = AutoModelForCausalLM.from_pretrained(folder).eval()
    student = convert(teacher).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    calls = []
    real = hyena_lite.hf_cache.cached_forward
    monkeypatch.setattr(
        hyena_lite.students, "cached_forward", lambda *a: calls.append(1) or real(*a)
    )
    generator = pipeline("text-generation", model=student, tokenizer=tokenizer)
    out = generator("To be or not to be", max_new_tokens=6, min_new_tokens=6, do_sample=False)
    text = out[0]["generated_text"]
    assert len(calls) == 2 * 6  # two Hyena layers, a prefill and five steps each
    ids = tokenizer("To be or not to be", return_tensors="pt").input_ids
    full = _greedy(student, ids, 6, use_cache=False)
    assert text == tokenizer.decode(full[0])


def _run_fresh(code: str, tmp_path) -> subprocess.CompletedProcess:
    """Run code in a fresh Python that finds this checkout's hyena_lite only through its import
    path, with a private transformers modules cache."""
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules")}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )


def test_a_saved_student_loads_and_generates_in_a_process_that_never_imports_hyena_lite(tmp_path):
    student = _student([1])
    ids = torch.randint(1, VOCAB, (1, 6))
    full = _greedy(student, ids, 10, use_cache=False)
    folder = tmp_path / "student"
    student.save_pretrained(folder, card={"teacher": "a random tiny GPT-2", "tokens": 0})
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "hyena_student.HyenaGPT2Config",
        "AutoModelForCausalLM": "hyena_student.HyenaGPT2LMHeadModel",
    }
    card = (folder / "README.md").read_text()
    assert "a random tiny GPT-2" in card and "Recipe: not recorded" in card
    code = f"""
import torch
from transformers import AutoModelForCausalLM
model = AutoModelForCausalLM.from_pretrained({str(folder)!r}, trust_remote_code=True).eval()
ids = torch.tensor({ids.tolist()})
out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=10,
                     min_new_tokens=10, do_sample=False, use_cache=True, pad_token_id=0)
print(out.tolist())
"""
    done = _run_fresh(code, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == full.tolist()


def test_loading_without_the_package_names_it(tmp_path):
    folder = tmp_path / "student"
    _student().save_pretrained(folder)
    code = f"""
import sys
sys.modules["hyena_lite"] = None  # as if the package were not installed
from transformers import AutoModelForCausalLM
AutoModelForCausalLM.from_pretrained({str(folder)!r}, trust_remote_code=True)
"""
    done = _run_fresh(code, tmp_path)
    assert done.returncode != 0
    assert "ImportError" in done.stderr and "`hyena-lite`" in done.stderr
    assert "pip install" in done.stderr


def test_the_model_card_takes_a_runs_log(tmp_path):
    log = {
        "config": {"context": {"teacher": "gpt2", "stage": "kd"}},
        "records": [{"step": 1, "tokens": 4096}, {"step": 2, "tokens": 8192}],
        "evals": [{"step": 2, "val_ppl": 123.456}],
    }
    (tmp_path / "log.json").write_text(json.dumps(log))
    folder = tmp_path / "student"
    _student([1]).save_pretrained(folder, run_log=tmp_path / "log.json")
    card = (folder / "README.md").read_text()
    assert "# A Hyena student of gpt2" in card
    assert "Training tokens: 8,192" in card and "stage kd" in card
    assert "| val_ppl | 123.5 | the run's validation windows" in card
    with pytest.raises(ValueError, match="unknown model card fields"):
        _student([1]).save_pretrained(tmp_path / "other", card={"teachr": "gpt2"})


def test_a_cache_of_hyena_layers_only_reports_the_tokens_it_has_seen():
    student = _student()  # no attention layer: transformers' Cache asks attention layers only
    cache = HyenaCache(student.config)
    assert all(isinstance(layer, HyenaCacheLayer) for layer in cache.layers)
    assert isinstance(cache.layers[0], LinearAttentionLayer)  # transformers' recurrent layer API
    assert cache.get_seq_length() == 0 and not cache.is_compileable
    ids = torch.randint(1, VOCAB, (2, 5))
    given = {kv_cache_argument(student): cache}  # past_key_values before 5.2x, then cache
    with torch.no_grad():
        student(ids, use_cache=True, **given)
        assert cache.get_seq_length() == 5
        student(ids[:, :1], use_cache=True, **given)
    assert [cache.get_seq_length(i) for i in range(3)] == [6, 6, 6]
    cache.reset()
    assert cache.get_seq_length() == 0
