"""TrainConfig.compile: the trained model and a KD stage's teacher under torch.compile train the
same steps as eager code, really compile (a later run in the process too), and refuse unknown
modes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from torch._dynamo.utils import counters
from transformers import LlamaConfig, LlamaForCausalLM

from hyena_lite import distill, training
from hyena_lite.models import convert
from hyena_lite.teachers import SMOLLM2_TINY_SHAPES
from hyena_lite.training import TrainConfig, _optimizer

TINY = SMOLLM2_TINY_SHAPES


@pytest.fixture
def cheap_backend(monkeypatch):
    """aot_eager: Dynamo's graphs and AOTAutograd's backward, no code generation (seconds)."""
    monkeypatch.setattr(training, "COMPILE_BACKEND", "aot_eager")
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


def _teacher() -> torch.nn.Module:
    torch.manual_seed(0)
    return distill.freeze(LlamaForCausalLM(LlamaConfig(**TINY)))


def _distil(teacher, mode: str, **options) -> tuple[list[float], torch.nn.Module]:
    """Three KD steps of a hybrid (attention at layer 1) from the same weights and batches."""
    torch.manual_seed(0)
    student = convert(teacher, hyena_layers=[0, 2], init="teacher")
    g = torch.Generator().manual_seed(0)
    data = [torch.randint(0, 128, (2, 48), generator=g) for _ in range(3)]
    config = TrainConfig(steps=3, lr=1e-3, batch_size=2, seq_len=48, progress=False, compile=mode)
    result = distill.kd(student, teacher, lambda start: iter(data[start:]), config, **options)
    return result.losses, student


def _graphs() -> int:
    return counters["stats"]["unique_graphs"]


@pytest.mark.parametrize("mode", ["whole", "regions"])
def test_compiled_kd_trains_the_eager_steps(cheap_backend, mode):
    teacher = _teacher()
    eager_losses, eager = _distil(teacher, "no", ce_weight=0.5)
    assert _graphs() == 0
    losses, student = _distil(teacher, mode, ce_weight=0.5)
    assert _graphs() >= 2  # the student's graphs and the teacher's
    assert losses == pytest.approx(eager_losses, abs=1e-5)
    assert list(student.state_dict()) == list(eager.state_dict())  # no wrapper left in the keys
    for (name, a), b in zip(student.state_dict().items(), eager.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("mode", ["whole", "regions"])
def test_the_logits_terms_compile_with_the_models(cheap_backend, monkeypatch, mode):
    """The KD and cross-entropy terms (float32 softmaxes over the vocabulary) are compiled as the
    models are, as one function, and give the eager values and gradients."""
    from hyena_lite.distill import stages

    seen = []
    monkeypatch.setattr(
        stages, "compiled", lambda fn, m: seen.append((fn, m)) or training.compiled(fn, m)
    )
    _distil(_teacher(), mode, ce_weight=0.5)
    assert (stages.logit_terms, mode) in seen
    torch.manual_seed(0)
    student = torch.randn(2, 9, 32, requires_grad=True)
    teacher, ids = torch.randn(2, 9, 32), torch.randint(0, 32, (2, 9))
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[1, 6:] = False
    fused = training.compiled(stages.logit_terms, mode)(student, teacher, ids, mask, 2.0)
    plain = stages.logit_terms(student, teacher, ids, mask, 2.0)
    for a, b in zip(fused, plain, strict=True):
        torch.testing.assert_close(a, b)
    (grad_fused,) = torch.autograd.grad(sum(fused), student)
    (grad_plain,) = torch.autograd.grad(sum(plain), student)
    torch.testing.assert_close(grad_fused, grad_plain)


def test_a_later_run_compiles_too(cheap_backend):
    """accelerate keeps its first Accelerator's dynamo plugin for the process: the loop compiles
    itself, so an eager run first does not turn compilation off for the next."""
    teacher = _teacher()
    _distil(teacher, "no")
    _distil(teacher, "whole")
    assert _graphs() >= 2


def test_the_induction_objective_compiles(cheap_backend):
    teacher = _teacher()
    eager_losses, _ = _distil(teacher, "no", induction_weight=1.0)
    losses, _ = _distil(teacher, "whole", induction_weight=1.0)
    assert _graphs() >= 2
    assert losses == pytest.approx(eager_losses, abs=1e-5)


def test_the_readout_loss_runs_eagerly(cheap_backend):
    """Its hooks change the student at every step: compiled, each step would recompile."""
    teacher = _teacher()
    eager_losses, _ = _distil(teacher, "no", induction_weight=1.0, readout_weight=0.5)
    losses, _ = _distil(teacher, "whole", induction_weight=1.0, readout_weight=0.5)
    assert _graphs() == 0
    assert losses == eager_losses


def test_unknown_mode_is_refused_and_the_mode_is_not_part_of_the_identity():
    with pytest.raises(ValueError, match="compile must be one of no, regions, whole"):
        TrainConfig(steps=1, compile="fast")
    assert TrainConfig(steps=1, compile="whole").identity() == TrainConfig(steps=1).identity()


def test_adamw_is_fused_on_cuda_only():
    params = [torch.nn.Parameter(torch.zeros(3, 3))]
    assert not _optimizer(params, TrainConfig(steps=1)).defaults["fused"]
    if not torch.cuda.is_available():
        pytest.skip("fused AdamW needs CUDA parameters; the CPU keeps the foreach update")
    params = [torch.nn.Parameter(torch.zeros(3, 3, device="cuda"))]
    assert _optimizer(params, TrainConfig(steps=1)).defaults["fused"]


def test_kd_step_speed_smoke(tmp_path, cheap_backend):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import kd_step_speed

    out = tmp_path / "kd.json"
    kd_step_speed.main(["--smoke", "--out", str(out), "--modes", "no,whole"])
    report = json.loads(out.read_text())
    rows = {(r["objective"], r["compile"]): r for r in report["variants"]}
    assert set(rows) == {("kd", "no"), ("kd", "whole"), ("induction", "no"), ("induction", "whole")}
    for objective in ("kd", "induction"):
        assert rows[(objective, "no")]["tokens_per_s"] > 0
        assert rows[(objective, "whole")]["max_loss_diff_vs_no"] < 1e-4
    assert report["command"].startswith("python3 scripts/kd_step_speed.py --smoke")


def test_the_distill_command_compiles_its_stages(cheap_backend, tmp_path, capsys):
    from hyena_lite.cli import main

    argv = ["distill", "--stage", "kd", "--profile", "smoke", "--tokens", "256"]
    code = main([*argv, "--out", str(tmp_path), "--no-progress", "--compile", "whole"])
    assert code in (0, None), capsys.readouterr().err
    assert _graphs() >= 2


def test_kd_step_speed_can_leave_the_logit_terms_eager():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import kd_step_speed

    from hyena_lite.distill import stages

    model = torch.nn.Linear(2, 2)
    with kd_step_speed.logit_terms_left_eager(True):
        assert stages.compiled(stages.logit_terms, "whole") is stages.logit_terms
        assert stages.compiled(model, "whole") is not model
    assert stages.compiled(stages.logit_terms, "whole") is not stages.logit_terms
