"""The decoders at their best (hyena_lite.fastdecode) compute what the plain ones do: the student's
static recurrent step equals RecurrentDecoder's, the teacher's static-cache step equals the full
forward; both count the bytes a step reads. On CPU the steps run eagerly (no CUDA graph); on a GPU
the recorded and the compiled steps are checked too."""

import importlib.util
import shutil

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel

from hyena_lite.decoding import RecurrentDecoder, fit_operator, fit_student, hyena_operators
from hyena_lite.fastdecode import (
    COMPILE_SETTINGS,
    ModalStep,
    StudentGraphDecoder,
    TeacherGraphDecoder,
    _check_triton,
    _compiled,
    _one_row_addmm,
    cache_length,
    compile_setting,
    weight_bytes,
)
from hyena_lite.generation import Decoder
from hyena_lite.models import convert
from hyena_lite.operator import HyenaOperator

VOCAB = 97


def _llama(device="cpu"):
    """A tiny Llama: a model whose MLP and layout are not GPT-2's."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
    )
    return LlamaForCausalLM(config).to(device)


def _pair(hyena_layers=None):
    torch.manual_seed(0)
    config = GPT2Config(
        n_layer=2,
        n_embd=32,
        n_head=2,
        vocab_size=VOCAB,
        n_positions=64,
        bos_token_id=0,
        eos_token_id=0,
    )
    teacher = GPT2LMHeadModel(config).eval()
    return teacher, convert(teacher, hyena_layers=hyena_layers).eval()


def _reference_student(student, fits, ids, prompt):
    with Decoder(student, "recurrent", fits=fits) as decoder:
        return [decoder.prefill(ids[:, :prompt])] + [
            decoder.step(ids[:, i]) for i in range(prompt, ids.shape[1])
        ]


def _pair_with_references():
    """`_pair()` with a modal fit, prompts of 6 and 8 more tokens (batch 2), the recurrent
    decoder's logits and the teacher's full forward on the CPU, everything then moved to the GPU
    if there is one, and the tolerance against those CPU references (a GPU's kernels sum in
    other orders)."""
    teacher, student = _pair()
    fits = fit_student(student, order=8, progress=False).fits
    ids = torch.randint(0, VOCAB, (2, 14))
    reference = _reference_student(student, fits, ids, 6)
    with torch.no_grad():
        full = teacher(ids).logits
    if not torch.cuda.is_available():
        return teacher, student, fits, ids, reference, full, 1e-5
    fits = {i: fit.to(device="cuda") for i, fit in fits.items()}
    return teacher.cuda(), student.cuda(), fits, ids.cuda(), reference, full, 1e-4


def _steps(decoder, ids, prompt):
    return [decoder.prefill(ids[:, :prompt])] + [
        decoder.step(ids[:, i]) for i in range(prompt, ids.shape[1])
    ]


def test_student_static_step_equals_the_recurrent_decoder_and_a_new_prefill_restarts():
    _, student = _pair()
    fits = fit_student(student, order=8, progress=False).fits
    ids = torch.randint(0, VOCAB, (3, 20))
    decoder = StudentGraphDecoder(student, fits, batch=3)
    for prompt in (5, 11):  # the same decoder twice: the second prefill replaces the state
        reference = _reference_student(student, fits, ids, prompt)
        got = _steps(decoder, ids, prompt)
        for want, have in zip(reference, got, strict=True):
            torch.testing.assert_close(have, want, atol=1e-5, rtol=0)
        assert int(decoder.position) == ids.shape[1]


def _operator_pair(order, fir, batch, prompt=9, modal_order=6):
    """A Hyena operator of `order`, its modal fit with an FIR head of `fir` taps, a prefilled
    RecurrentDecoder, a ModalStep loaded from it, and the inputs of 40 further steps."""
    torch.manual_seed(order * 10 + fir)
    op = HyenaOperator(16, 64, order=order, filter_order=16).eval()
    fit, _ = fit_operator(op, order=modal_order, fir=fir)
    u = torch.randn(batch, prompt + 40, 16)
    reference = RecurrentDecoder(op, fit)
    reference.prefill(u[:, :prompt])
    step = ModalStep(op, fit, batch)
    step.load(reference)
    return reference, step, u[:, prompt:]


@pytest.mark.parametrize("order", [2, 3])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("fir", [1, 2])  # fir=1: the input entering the modes is the new one
def test_modal_step_equals_the_recurrent_decoder_over_many_steps(order, batch, fir):
    reference, step, later = _operator_pair(order, fir, batch)
    with torch.no_grad():
        for t in range(later.shape[1]):
            want = reference.extend(later[:, t : t + 1])
            torch.testing.assert_close(step(later[:, t : t + 1]), want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(step.recent, reference.recent, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(step.state_re, reference.state.real, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(step.state_im, reference.state.imag, atol=1e-5, rtol=1e-5)


def test_teacher_static_cache_step_equals_the_full_forward_with_a_chunked_prefill():
    teacher, _ = _pair()
    ids = torch.randint(0, VOCAB, (3, 20))
    with torch.no_grad():
        full = teacher(ids).logits
    decoder = TeacherGraphDecoder(teacher, batch=3, max_len=32, prefill_tokens=12)  # 2 rows a time
    for prompt in (6, 4):
        got = _steps(decoder, ids, prompt)
        for t, logits in enumerate(got):
            torch.testing.assert_close(logits, full[:, prompt - 1 + t], atol=1e-5, rtol=0)


def test_rewind_and_snapshot_put_the_position_and_state_back():
    teacher, student = _pair()
    fits = fit_student(student, order=8, progress=False).fits
    ids = torch.randint(0, VOCAB, (2, 10))
    for decoder in (
        TeacherGraphDecoder(teacher, batch=2, max_len=16),
        StudentGraphDecoder(student, fits, batch=2),
    ):
        decoder.prefill(ids[:, :6])
        restore = decoder._snapshot()
        first = decoder.step(ids[:, 6])
        decoder.step(ids[:, 7])
        restore()
        torch.testing.assert_close(decoder.step(ids[:, 6]), first, atol=0, rtol=0)
        decoder.rewind(3)
        position = decoder.position if hasattr(decoder, "position") else decoder._counter()
        assert int(position) == 3
        assert not decoder.replay().requires_grad  # a benchmark replays without no_grad


def test_bytes_a_step_reads():
    teacher, student = _pair()
    embedding = teacher.transformer.wpe.weight
    params = sum(p.numel() * p.element_size() for p in teacher.parameters())  # tied wte once
    assert weight_bytes(teacher) == params - embedding.numel() * embedding.element_size()
    decoder = TeacherGraphDecoder(teacher, batch=2, max_len=32)
    decoder.prefill(torch.randint(0, VOCAB, (2, 8)))
    kv = 2 * 2 * 2 * 32 * 8 * 4  # layers x (keys, values) x batch x width x positions x fp32
    assert decoder.state_bytes() == kv * 32 // 8
    assert decoder.read_bytes() == weight_bytes(teacher) + kv
    fits = fit_student(student, order=4, progress=False).fits
    fast = StudentGraphDecoder(student, fits, batch=2)
    filters = sum(
        p.numel() * p.element_size() for n, p in student.named_parameters() if "filter_fn" in n
    )
    assert weight_bytes(student, lambda n: ".filter_fn." in n) == weight_bytes(student) - filters
    assert fast.read_bytes() > weight_bytes(student) - filters + fast.state_bytes()


def test_clear_errors():
    teacher, student = _pair()
    _, hybrid = _pair(hyena_layers=[1])
    fits = fit_student(student, order=4, progress=False).fits
    with pytest.raises(ValueError, match="every layer is Hyena"):
        StudentGraphDecoder(hybrid, fits, batch=1)
    with pytest.raises(ValueError, match="no modal fit for Hyena layers \\[1\\]"):
        StudentGraphDecoder(student, {0: fits[0]}, batch=1)
    with pytest.raises(ValueError, match="decode a Hyena student with StudentGraphDecoder"):
        TeacherGraphDecoder(student, batch=1, max_len=16)
    with pytest.raises(ValueError, match="records a CUDA graph"):
        TeacherGraphDecoder(teacher, batch=1, max_len=16, graph=True)
    with pytest.raises(ValueError, match="batch=2"):
        TeacherGraphDecoder(teacher, batch=2, max_len=16).prefill(torch.zeros(1, 4, dtype=int))
    with pytest.raises(ValueError, match="max_len=16"):
        TeacherGraphDecoder(teacher, batch=1, max_len=16).prefill(torch.zeros(1, 16, dtype=int))
    with pytest.raises(ValueError, match="batch=2"):
        StudentGraphDecoder(student, fits, batch=2).prefill(torch.zeros(1, 4, dtype=int))


def _greedy(decoder, prompt, tokens):
    """Greedy decoding: the prompt's next token, then each step's argmax fed back."""
    chosen = [decoder.prefill(prompt).argmax(-1)]
    for _ in range(tokens - 1):
        chosen.append(decoder.step(chosen[-1]).argmax(-1))
    return torch.stack(chosen, dim=1)


@pytest.mark.skipif(
    not any(shutil.which(c) for c in ("g++", "c++", "clang++")),
    reason="torch.compile's CPU backend (inductor) needs a C++ compiler",
)
def test_compiled_student_step_decodes_the_same_tokens_as_the_eager_step():
    _, student = _pair()
    fits = fit_student(student, order=8, progress=False).fits
    prompt = torch.randint(0, VOCAB, (2, 6))
    eager = StudentGraphDecoder(student, fits, batch=2, compile=False)
    compiled = StudentGraphDecoder(student, fits, batch=2, compile=True)
    assert not eager.compile and compiled.compile
    assert StudentGraphDecoder(student, fits, batch=2).compile is False  # default: only on CUDA
    want, have = _greedy(eager, prompt, 12), _greedy(compiled, prompt, 12)
    assert torch.equal(have, want)
    torch.testing.assert_close(
        compiled.step(want[:, -1]), eager.step(want[:, -1]), atol=1e-5, rtol=0
    )


@pytest.mark.skipif(
    not any(shutil.which(c) for c in ("g++", "c++", "clang++")),
    reason="torch.compile's CPU backend (inductor) needs a C++ compiler",
)
@pytest.mark.parametrize(("order", "batch"), [(2, 1), (3, 3)])
def test_compiled_modal_step_equals_the_eager_one(order, batch):
    torch._dynamo.reset()
    # modal order 16 (8 modes) as the GPT-2 benchmarks: some arrangements of the step trip
    # inductor's C++ backend at batch 1 with these shapes only
    _, eager, later = _operator_pair(order, fir=2, batch=batch, modal_order=16)
    _, compiled, _ = _operator_pair(order, fir=2, batch=batch, modal_order=16)
    run = torch.compile(compiled, dynamic=False)
    with torch.no_grad():
        for t in range(later.shape[1]):
            u = later[:, t : t + 1]
            torch.testing.assert_close(run(u), eager(u), atol=1e-5, rtol=1e-5)
    for name in eager.state_names:  # the compiled step updated its buffers in place
        torch.testing.assert_close(getattr(compiled, name), getattr(eager, name))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")
@pytest.mark.parametrize(
    ("compile", "mlp_kernel"),
    [(False, "torch"), (True, "torch"), ("tuned", "torch"), (False, "triton"), (True, "triton")],
)
def test_recorded_steps_on_a_gpu_equal_the_eager_ones(compile, mlp_kernel):
    teacher, student = (m.cuda() for m in _pair())
    fits = fit_student(student, order=8, progress=False).fits
    ids = torch.randint(0, VOCAB, (2, 20), device="cuda")
    with torch.no_grad():
        full = teacher(ids).logits
    reference = _reference_student(student, fits, ids, 5)
    decoder = StudentGraphDecoder(student, fits, 2, compile=compile, mlp_kernel=mlp_kernel)
    for want, have in zip(reference, _steps(decoder, ids, 5), strict=True):
        torch.testing.assert_close(have, want, atol=1e-4, rtol=0)
    got = _steps(
        TeacherGraphDecoder(teacher, 2, 32, compile=compile, mlp_kernel=mlp_kernel), ids, 5
    )
    for t, logits in enumerate(got):
        torch.testing.assert_close(logits, full[:, 4 + t], atol=1e-4, rtol=0)


# ------------------------------------------------------------------ the Triton step (modal_kernel)
def _triton_runs_here():
    """Why the Triton step cannot run in this process, or None: the library's own refusal."""
    try:
        _check_triton(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    except (ImportError, ValueError) as refusal:
        return str(refusal)
    return None


def _triton_copy(step, kernel, block_channels=None):
    """A ModalStep like `step` (same operator, fit and state) run by the Triton `kernel`."""
    import copy

    from hyena_lite.modal_kernel import channels_per_program

    fused = copy.deepcopy(step)
    fused.kernel = kernel
    fused.block_channels = block_channels or channels_per_program(
        step.window.shape[0], step.width, step.window.device
    )
    return fused


@pytest.mark.skipif(_triton_runs_here() is not None, reason=str(_triton_runs_here()))
@pytest.mark.parametrize(  # width 16: one program of 32 channels, half masked, or two of 8
    ("kernel", "block"),
    [("triton", 32), ("triton_in_proj", 8), ("triton_fused", 8), ("triton_fused", 32)],
)
@pytest.mark.parametrize("order", [2, 3])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("fir", [1, 3])
def test_triton_step_equals_the_modal_step_and_updates_the_same_state(
    kernel, block, order, batch, fir
):
    reference, step, later = _operator_pair(order, fir, batch)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    step = step.to(device)
    fused = _triton_copy(step, kernel, block)
    with torch.no_grad():
        for t in range(12):
            u = later[:, t : t + 1].to(device)
            torch.testing.assert_close(fused(u), step(u), atol=1e-5, rtol=1e-5)
    for name in step.state_names:
        torch.testing.assert_close(getattr(fused, name), getattr(step, name), atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="Triton's interpreter rounds float32 "
    "to bfloat16 toward zero (GPUs round to nearest even): bfloat16 on a GPU only",
)
@pytest.mark.skipif(_triton_runs_here() is not None, reason=str(_triton_runs_here()))
@pytest.mark.parametrize("kernel", ["triton", "triton_in_proj", "triton_fused"])
def test_triton_step_in_bfloat16_follows_the_modal_step_at_a_gpt2_width(kernel):
    """768 channels (at batch 2, as many programs as channels_per_program gives), FIR head of 2
    taps, bfloat16 weights: every step's output and state stay within bfloat16 rounding of
    ModalStep's eager step."""
    torch.manual_seed(0)
    op = HyenaOperator(768, 256, order=2, filter_order=16).eval()
    fit, _ = fit_operator(op, order=16, fir=2)
    op = op.to("cuda", torch.bfloat16)
    u = torch.randn(2, 40, 768, device="cuda", dtype=torch.bfloat16)
    reference = RecurrentDecoder(op, fit.to(device="cuda"))
    reference.prefill(u[:, :16])
    step = ModalStep(op, fit, 2)
    step.load(reference)
    fused = _triton_copy(step, kernel)
    with torch.no_grad():
        for t in range(16, 40):
            want, have = step(u[:, t : t + 1]), fused(u[:, t : t + 1])
            torch.testing.assert_close(have.float(), want.float(), atol=2e-2, rtol=2e-2)
    for name in step.state_names:
        torch.testing.assert_close(getattr(fused, name), getattr(step, name), atol=2e-2, rtol=2e-2)


def test_triton_step_refuses_a_cpu_without_the_interpreter(monkeypatch):
    if importlib.util.find_spec("triton") is None:
        _, step, _ = _operator_pair(2, 1, 1)
        with pytest.raises(ImportError, match="needs the triton package"):
            ModalStep(step.op, fit_operator(step.op, order=4)[0], 1, kernel="triton")
        return
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    _, step, _ = _operator_pair(2, 1, 1)
    with pytest.raises(ValueError, match="TRITON_INTERPRET=1"):
        ModalStep(step.op, fit_operator(step.op, order=4)[0], 1, kernel="triton")
    with pytest.raises(ValueError, match="kernel must be one of"):
        ModalStep(step.op, fit_operator(step.op, order=4)[0], 1, kernel="cuda")


@pytest.mark.skipif(_triton_runs_here() is not None, reason=str(_triton_runs_here()))
def test_triton_step_refuses_a_block_that_is_no_power_of_two_and_a_lone_out_projection():
    from hyena_lite.modal_kernel import modal_step

    _, step, later = _operator_pair(2, 1, 1)
    fit = fit_operator(step.op, order=4)[0]
    if torch.cuda.is_available():
        step, later = step.cuda(), later.cuda()
    with pytest.raises(ValueError, match="power of two"):
        ModalStep(step.op, fit, 1, kernel="triton", block_channels=12)
    with pytest.raises(ValueError, match="needs in_proj=True"):
        modal_step(_triton_copy(step, "triton"), later[:, 0], out_proj=True)


@pytest.mark.parametrize(
    ("kernel", "batch", "units", "processors", "want"),
    [
        ("modal", 1, 768, 132, 16),  # channels of the mixer's step
        ("modal", 1, 768, 8, 32),
        ("modal", 8, 768, 132, 16),
        ("modal", 16, 768, 132, 32),
        ("modal", 1, 64, 1, 32),
        ("mlp", 1, 3072, 132, 16),  # hidden units of the MLP's step, whatever the batch
        ("mlp", 1, 3072, 16, 64),
        ("mlp", 1, 128, 132, 16),
    ],
)
def test_programs_fill_the_gpu_with_two_programs_a_processor(
    monkeypatch, kernel, batch, units, processors, want
):
    if importlib.util.find_spec("triton") is None:
        pytest.skip("the Triton kernels' modules import triton")
    from hyena_lite import mlp_kernel, modal_kernel

    monkeypatch.setattr(
        torch.cuda,
        "get_device_properties",
        lambda device: type("Properties", (), {"multi_processor_count": processors}),
    )
    cuda = torch.device("cuda")
    if kernel == "modal":
        assert modal_kernel.channels_per_program(batch, units, cuda) == want
    else:  # a program runs every sequence with its weights: no batch in the rule
        assert mlp_kernel.units_per_program(units, cuda) == want


@pytest.mark.skipif(_triton_runs_here() is not None, reason=str(_triton_runs_here()))
def test_student_decoder_with_the_triton_step_equals_the_recurrent_decoder():
    _, student = _pair()
    fits = fit_student(student, order=8, progress=False).fits
    ids = torch.randint(0, VOCAB, (2, 14))
    reference = _reference_student(student, fits, ids, 6)
    if torch.cuda.is_available():
        student, fits = student.cuda(), {i: fit.to(device="cuda") for i, fit in fits.items()}
        ids = ids.cuda()
    for kernel in ("triton_in_proj", "triton_fused"):
        decoder = StudentGraphDecoder(student, fits, batch=2, compile=False, kernel=kernel)
        for want, have in zip(reference, _steps(decoder, ids, 6), strict=True):
            torch.testing.assert_close(have.cpu(), want, atol=1e-5, rtol=0)


# ------------------------------------------------------------------- the Triton MLP (mlp_kernel)
def _mlp_of(width=32, activation="gelu_new", seed=0):
    """A GPT-2 block's MLP (hidden 4 x width) with weights large enough that rounding shows."""
    torch.manual_seed(seed)
    config = GPT2Config(n_layer=1, n_embd=width, n_head=2, vocab_size=VOCAB, n_positions=16)
    config.activation_function = activation
    mlp = GPT2LMHeadModel(config).transformer.h[0].mlp.eval()
    for parameter in mlp.parameters():
        parameter.data.normal_(0.0, 0.2)
    return mlp


@pytest.mark.skipif(_triton_runs_here() is not None, reason=str(_triton_runs_here()))
@pytest.mark.parametrize(("width", "hidden_per_program"), [(32, 32), (32, 8), (40, 16), (40, 64)])
@pytest.mark.parametrize("batch", [1, 3])
def test_triton_mlp_step_equals_the_gpt2_mlp(width, hidden_per_program, batch):
    """Width 40: tiles of 64 inputs, partly masked; its 160 hidden units in programs of 64 leave
    the last program's half empty. The partial rows sum to the MLP's output without c_proj's
    bias, whether a program reads its weight slices as one tile or (tiles of 128 values) tile by
    tile."""
    from hyena_lite.mlp_kernel import MLPStep, mlp_partials

    device = "cuda" if torch.cuda.is_available() else "cpu"
    mlp = _mlp_of(width).to(device)
    x = torch.randn(batch, 1, width, device=device)
    with torch.no_grad():
        want = mlp(x)
        torch.testing.assert_close(MLPStep(mlp, hidden_per_program)(x), want, atol=1e-5, rtol=1e-5)
        partial = mlp_partials(mlp, x[:, 0], hidden_per_program)
        tiled = mlp_partials(mlp, x[:, 0], hidden_per_program, tile_elements=128)
    assert partial.shape == (-(-4 * width // hidden_per_program), batch, width)
    assert partial.dtype == torch.float32
    for rows in (partial, tiled):
        torch.testing.assert_close(rows.sum(0) + mlp.c_proj.bias, want[:, 0], atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="Triton's interpreter rounds float32 "
    "to bfloat16 toward zero (GPUs round to nearest even): bfloat16 on a GPU only",
)
@pytest.mark.skipif(_triton_runs_here() is not None, reason=str(_triton_runs_here()))
def test_triton_mlp_step_in_bfloat16_follows_the_mlp_at_a_gpt2_width():
    from hyena_lite.mlp_kernel import MLPStep

    mlp = _mlp_of(768).to("cuda", torch.bfloat16)
    for parameter in mlp.parameters():
        parameter.data.mul_(0.25)
    x = torch.randn(2, 1, 768, device="cuda", dtype=torch.bfloat16)
    with torch.no_grad():
        want, have = mlp(x).float(), MLPStep(mlp)(x).float()
    torch.testing.assert_close(have, want, atol=2e-2, rtol=2e-2)


@pytest.mark.skipif(_triton_runs_here() is not None, reason=str(_triton_runs_here()))
def test_decoders_with_the_triton_mlp_equal_their_references_and_give_the_mlps_back(
    monkeypatch,
):
    from hyena_lite import mlp_kernel

    calls = []
    kernel_call = mlp_kernel.mlp_partials
    monkeypatch.setattr(
        mlp_kernel,
        "mlp_partials",
        lambda mlp, *a, **k: calls.append(mlp) or kernel_call(mlp, *a, **k),
    )
    teacher, student, fits, ids, reference, full, atol = _pair_with_references()
    decoder = StudentGraphDecoder(
        student, fits, batch=2, compile=False, kernel="triton_fused", mlp_kernel="triton"
    )
    for want, have in zip(reference, _steps(decoder, ids, 6), strict=True):
        torch.testing.assert_close(have.cpu(), want, atol=atol, rtol=0)
    decoder = TeacherGraphDecoder(teacher, batch=2, max_len=32, mlp_kernel="triton")
    for t, logits in enumerate(_steps(decoder, ids, 6)):
        torch.testing.assert_close(logits.cpu(), full[:, 5 + t], atol=atol, rtol=0)
    mlps = [block.mlp for model in (teacher, student) for block in model.transformer.h]
    assert {id(m) for m in calls} == {id(m) for m in mlps}  # the kernel ran every MLP
    if not torch.cuda.is_available():  # a CUDA graph calls Python only to warm up and record
        assert len(calls) == 2 * 8 * 2  # both decoders, 8 steps, 2 layers
    for model in (teacher, student):  # the stand-ins only ever sit there during a step
        assert all(type(block.mlp).__name__ == "GPT2MLP" for block in model.transformer.h)


def test_triton_mlp_refusals_say_what_to_do(monkeypatch):
    teacher, _ = _pair()
    with pytest.raises(ValueError, match="mlp_kernel must be one of"):
        TeacherGraphDecoder(teacher, batch=1, max_len=8, mlp_kernel="cuda")
    if _triton_runs_here() is not None:  # no triton, or no way to run it: refused as the mixer is
        with pytest.raises((ImportError, ValueError), match="triton|TRITON_INTERPRET"):
            TeacherGraphDecoder(teacher, batch=1, max_len=8, mlp_kernel="triton")
        return
    from hyena_lite.mlp_kernel import MLPStep, computes_gelu_tanh, mlp_partials

    device = "cuda" if torch.cuda.is_available() else "cpu"  # where the kernel runs here
    llama = _llama(device)
    with pytest.raises(ValueError, match="not a GPT-2 MLP"):
        TeacherGraphDecoder(llama, batch=1, max_len=8, mlp_kernel="triton")
    with pytest.raises(ValueError, match="tanh approximation"):
        MLPStep(_mlp_of(32, activation="gelu").to(device))
    assert computes_gelu_tanh(_mlp_of(32, activation="gelu_pytorch_tanh").act)
    mlp = _mlp_of(32).to(device)
    with pytest.raises(ValueError, match="power of two"):
        mlp_partials(mlp, torch.zeros(1, 32, device=device), hidden_per_program=12)
    with pytest.raises(ValueError, match=r"shape \[batch, 32\]"):
        mlp_partials(mlp, torch.zeros(1, 16, device=device), 16)
    with pytest.raises(ValueError, match="one position a step"):
        MLPStep(mlp)(torch.zeros(1, 2, 32, device=device))


# ----------------------------------------------------------------------- compile settings (tuned)
def test_one_row_addmm_is_addmm_and_leaves_more_rows_to_inductor():
    bias, row, weight = torch.randn(8), torch.randn(1, 5), torch.randn(5, 8)
    torch.testing.assert_close(_one_row_addmm(bias, row, weight), torch.addmm(bias, row, weight))
    torch.testing.assert_close(
        _one_row_addmm(bias, row, weight, beta=0.5, alpha=2.0),
        torch.addmm(bias, row, weight, beta=0.5, alpha=2.0),
    )
    assert _one_row_addmm(bias, torch.randn(2, 5), weight) is NotImplemented


def test_unknown_compile_settings_are_refused_by_name():
    assert compile_setting(False) is None
    assert compile_setting(True) == "default"
    assert [compile_setting(s) for s in COMPILE_SETTINGS] == list(COMPILE_SETTINGS)
    with pytest.raises(ValueError, match="one of default, tuned, autotune; got 'fast'"):
        compile_setting("fast")
    _, student = _pair()
    fits = fit_student(student, order=8, progress=False).fits
    with pytest.raises(ValueError, match="got 'fast'"):
        StudentGraphDecoder(student, fits, batch=1, compile="fast")


@pytest.mark.skipif(
    not any(shutil.which(c) for c in ("g++", "c++", "clang++")),
    reason="torch.compile's CPU backend (inductor) needs a C++ compiler",
)
def test_tuned_setting_lowers_a_one_row_linear_into_a_generated_kernel():
    from torch._inductor.utils import run_and_get_code

    torch._dynamo.reset()
    linear, x = nn.Linear(16, 32), torch.randn(1, 1, 16)
    with torch.no_grad():
        default_out, default_code = run_and_get_code(_compiled(lambda: linear(x), "default"))
        torch._dynamo.reset()
        tuned_out, tuned_code = run_and_get_code(_compiled(lambda: linear(x), "tuned"))
        want = linear(x)
    assert "extern_kernels.addmm" in "".join(default_code)  # inductor's own: a library call
    assert "extern_kernels.addmm" not in "".join(tuned_code)  # tuned: fused into its kernel
    torch.testing.assert_close(default_out, want)
    torch.testing.assert_close(tuned_out, want)


# ------------------------------------------------- the block-by-block step (hyena_lite.block_steps)
@pytest.mark.skipif(_triton_runs_here() is not None, reason=str(_triton_runs_here()))
@pytest.mark.parametrize("tile", [16_384, 256])  # whole slices, or tile by tile
def test_kernel_prologues_add_normalise_and_sum_as_the_block_does(tile):
    from hyena_lite.block_prologue import NormInput
    from hyena_lite.mlp_kernel import mlp_partials
    from hyena_lite.modal_kernel import modal_step

    device = "cuda" if torch.cuda.is_available() else "cpu"
    atol = 1e-4 if device == "cuda" else 1e-5
    block = GPT2LMHeadModel(
        GPT2Config(n_layer=1, n_embd=40, n_head=2, vocab_size=VOCAB, n_positions=16)
    ).transformer.h[0]
    block = block.eval().to(device)
    for parameter in block.parameters():
        parameter.data.normal_(0.0, 0.2)
    base, delta = torch.randn(3, 40, device=device), torch.randn(3, 40, device=device)
    bias = torch.randn(40, device=device)
    h = base + (delta + bias)
    stream, total = torch.full_like(base, float("nan")), torch.zeros_like(base)
    with torch.no_grad():
        want = block.mlp(block.ln_2(h))
        into = NormInput(base, delta, bias, block.ln_2, stream)
        mlp_partials(block.mlp, None, 16, tile, norm=into, accumulator=total)
    torch.testing.assert_close(total + block.mlp.c_proj.bias, want, atol=atol, rtol=0)
    torch.testing.assert_close(stream, h, atol=0, rtol=0)

    _, step, later = _operator_pair(order=2, fir=2, batch=3)
    step = step.to(device)
    fused = _triton_copy(step, "triton_fused")
    norm = nn.LayerNorm(step.width).to(device)
    nn.init.normal_(norm.weight, 1.0, 0.2)
    nn.init.normal_(norm.bias, 0.0, 0.2)
    base, delta = later[:, 0].to(device), torch.randn_like(later[:, 0]).to(device)
    h = base + delta
    stream, total = torch.full_like(base, float("nan")), torch.zeros_like(base)
    with torch.no_grad():
        want = step(norm(h)[:, None])[:, 0]
        into = NormInput(base, delta, torch.zeros_like(norm.bias), norm, stream)
        modal_step(fused, None, True, True, norm=into, accumulator=total)
    torch.testing.assert_close(total + step.op.out_proj.bias, want, atol=atol, rtol=1e-5)
    torch.testing.assert_close(stream, h, atol=0, rtol=0)
    for name in step.state_names:  # and the states moved on as the plain step's did
        torch.testing.assert_close(getattr(fused, name), getattr(step, name), atol=atol, rtol=1e-5)


@pytest.mark.skipif(_triton_runs_here() is not None, reason=str(_triton_runs_here()))
@pytest.mark.parametrize(("compile", "pdl"), [(False, None), (True, None), (True, False)])
def test_block_by_block_steps_equal_their_references(compile, pdl):
    if compile and not torch.cuda.is_available():
        pytest.skip("compiled and recorded on a CUDA GPU only (the CPU runs it in the interpreter)")
    teacher, student, fits, ids, reference, full, atol = _pair_with_references()
    options = {"compile": compile, "mlp_kernel": "triton_blocks", "pdl": pdl}
    decoder = StudentGraphDecoder(student, fits, batch=2, kernel="triton_fused", **options)
    for want, have in zip(reference, _steps(decoder, ids, 6), strict=True):
        torch.testing.assert_close(have.cpu(), want, atol=atol, rtol=0)
    for attention in ("sdpa", "split"):
        decoder = TeacherGraphDecoder(teacher, batch=2, max_len=32, attention=attention, **options)
        for t, logits in enumerate(_steps(decoder, ids, 6)):
            torch.testing.assert_close(logits.cpu(), full[:, 5 + t], atol=atol, rtol=0)
    decoder.rewind(9)  # the counter it advances is the cache's own
    assert int(decoder._counter()) == 9


@pytest.mark.skipif(_triton_runs_here() is not None, reason=str(_triton_runs_here()))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_split_attention_equals_masked_attention_at_every_position(dtype):
    from hyena_lite.split_attention import split_attention

    if dtype != torch.float32 and not torch.cuda.is_available():
        pytest.skip("the interpreter rounds bfloat16 toward zero (float32 only on the CPU)")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    batch, heads, length, dim = 2, 3, 200, 16
    keys, values = torch.randn(2, batch, heads, length, dim, device=device, dtype=dtype)
    rows = torch.randn(batch, heads, 3 * dim, device=device, dtype=dtype)
    q = rows[..., dim : 2 * dim]  # rows of stride 3 dim, as c_attn's output splits them
    for position in (0, 63, 64, 130, length - 1):  # in the first, at and past a chunk's edge
        visible = (torch.arange(length, device=device) <= position).view(1, 1, 1, -1)
        want = F.scaled_dot_product_attention(
            q[:, :, None].float(), keys.float(), values.float(), attn_mask=visible, scale=0.3
        )[:, :, 0]
        arrivals = torch.zeros(batch * heads, dtype=torch.int32, device=device)
        for chunk in (64, 128, 256):
            at = torch.tensor(position, device=device)
            have = split_attention(q, keys, values, at, 0.3, chunk, arrivals)
            assert have.dtype == dtype and not arrivals.any()  # left at zero for the next call
            atol = 1e-5 if dtype == torch.float32 else 2e-2
            torch.testing.assert_close(have.float(), want, atol=atol, rtol=0)
    with pytest.raises(ValueError, match="multiple of 64"):
        split_attention(q, keys, values, torch.tensor(0, device=device), 0.3, 96)
    with pytest.raises(ValueError, match=r"q must be \[batch, heads, head_dim\]"):
        split_attention(q[:1], keys, values, torch.tensor(0, device=device), 0.3, 64)
    with pytest.raises(ValueError, match="arrivals must be int32 zeros of shape"):
        split_attention(q, keys, values, torch.tensor(0), 0.3, 64, torch.zeros(batch * heads))
    with pytest.raises(ValueError, match="contiguous"):
        split_attention(
            q, keys.transpose(2, 3).contiguous().transpose(2, 3), values, torch.tensor(0), 0.3, 64
        )


@pytest.mark.skipif(_triton_runs_here() is not None, reason=str(_triton_runs_here()))
def test_keys_per_program_picks_the_fastest_chunks_measured_on_an_h100(monkeypatch):
    """GPT-2's 12 heads at batch 1 on 132 multiprocessors: 64 / 128 / 512 keys a program at
    1K / 8K / 32K, the fastest chunk of each in results/decode_attention_h100.json."""
    from types import SimpleNamespace

    from hyena_lite.split_attention import keys_per_program

    h100 = SimpleNamespace(multi_processor_count=132)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: h100)
    cuda = torch.device("cuda")
    chosen = {n: keys_per_program(12, cache_length(n), cuda) for n in (1024, 8192, 32768)}
    assert chosen == {1024: 64, 8192: 128, 32768: 512}
    assert keys_per_program(64 * 12, cache_length(1024), cuda) == 1024  # batch 64: rows enough


def test_block_by_block_refusals_say_what_to_do():
    teacher, student = _pair()
    fits = fit_student(student, order=8, progress=False).fits
    with pytest.raises(ValueError, match="kernel='triton_fused'"):
        StudentGraphDecoder(student, fits, 1, compile=False, mlp_kernel="triton_blocks")
    with pytest.raises(ValueError, match="block-by-block step's"):
        TeacherGraphDecoder(teacher, 1, 8, mlp_kernel="triton", attention="split")
    if _triton_runs_here() is not None:
        return
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        with pytest.raises(ValueError, match="pdl=False"):
            TeacherGraphDecoder(teacher, 1, 8, mlp_kernel="triton_blocks", pdl=True)
    llama = _llama(device)
    with pytest.raises(ValueError, match="laid out as GPT-2"):
        TeacherGraphDecoder(llama, 1, 8, mlp_kernel="triton_blocks")
    with pytest.raises(ValueError, match="attention must be one of"):
        TeacherGraphDecoder(teacher.to(device), 1, 8, mlp_kernel="triton_blocks", attention="x")
    from hyena_lite.block_prologue import NormInput
    from hyena_lite.modal_kernel import modal_step

    step = ModalStep(hyena_operators(student)[0], fits[0], 2).to(device)
    rows = torch.zeros(2, 32, device=device)
    norm = nn.LayerNorm(32).to(device)
    with pytest.raises(ValueError, match="norm needs in_proj=True and out_proj=True"):
        modal_step(step, None, norm=NormInput(rows, rows, rows[0], norm, rows.clone()))
    with pytest.raises(ValueError, match="accumulator needs out_proj=True"):
        modal_step(step, rows, accumulator=rows.clone())
    with pytest.raises(ValueError, match="share one shape"):
        NormInput(rows, rows[:1], rows[0], norm, rows.clone()).arguments()
    with pytest.raises(ValueError, match="contiguous"):
        NormInput(rows, rows, rows[0], norm, torch.zeros(32, 2, device=device).T).arguments()
