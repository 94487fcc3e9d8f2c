"""The one CUDA-graph recorder: a replay recomputes from the same input memory."""

import pytest
import torch

from hyena_lite.cudagraph import record


def test_record_refuses_a_cpu_device() -> None:
    with pytest.raises(ValueError, match="CUDA graphs record CUDA work"):
        record(lambda: None, "cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_replay_reads_the_new_input_and_undoes_the_warm_up() -> None:
    x = torch.ones(4, device="cuda")
    calls = []
    counter = torch.zeros(1, device="cuda")

    def fn() -> torch.Tensor:
        calls.append(1)
        counter.add_(1)
        return x * 2

    graph, out = record(fn, "cuda", warmup=2, before_recording=lambda: counter.zero_())
    # two warm-ups undone; recording launches nothing, so only the replay adds
    assert len(calls) == 3 and counter.item() == 0
    x.fill_(5)
    graph.replay()
    assert torch.equal(out, torch.full((4,), 10.0, device="cuda")) and counter.item() == 1
