"""time_call reports the median and interquartile range over blocks, resets before every block, and
keeps within its bound on calls per block."""

import time

import pytest

from hyena_lite.timing import time_call, warmup_calls


def test_time_call_measures_a_known_sleep_and_resets_before_each_block():
    resets, calls = [], []

    def fn():
        calls.append(1)
        time.sleep(0.002)

    timing = time_call(fn, reset=lambda: resets.append(len(calls)), blocks=4, block_s=0.01)
    assert 1.9 < timing.median_ms < 20 and timing.iqr_ms >= 0
    assert timing.blocks == 4 and 1 <= timing.calls <= 200
    assert len(resets) == 5  # one before sizing the blocks, one before each block
    # between two resets: the Timer's warm-up calls and one block
    gaps = [b - a for a, b in zip(resets, resets[1:] + [len(calls)], strict=True)]
    assert gaps[1:] == [timing.calls + warmup_calls(timing.calls)] * 4
    assert timing.as_row("x") == {"x_ms": timing.median_ms, "x_iqr_ms": timing.iqr_ms}


def test_time_call_caps_the_calls_per_block_and_refuses_bad_settings():
    timing = time_call(lambda: None, blocks=2, block_s=1.0, max_calls=7)
    assert timing.calls == 7
    with pytest.raises(ValueError, match="blocks >= 1"):
        time_call(lambda: None, blocks=0)
