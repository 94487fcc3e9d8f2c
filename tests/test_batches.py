"""Batches of the training loop: mapped, counted and cut per process."""

import pytest
import torch

from hyena_lite.batches import batch_tokens, map_batch, shard


def test_map_and_count_a_tensor_and_a_dict_batch() -> None:
    ids = torch.arange(12).view(3, 4)
    assert torch.equal(map_batch(ids, lambda t: t + 1), ids + 1)
    mapped = map_batch({"input_ids": ids, "name": "x"}, lambda t: t * 2)
    assert torch.equal(mapped["input_ids"], ids * 2) and mapped["name"] == "x"
    assert batch_tokens(ids) == 12 and batch_tokens({"mask": ids[:1], "input_ids": ids}) == 12
    with pytest.raises(TypeError, match="a tensor or a dict of tensors"):
        map_batch([ids], lambda t: t)


def test_shards_cover_the_global_batch_in_order_and_refuse_an_uneven_split() -> None:
    ids = torch.arange(8).view(4, 2)
    assert torch.equal(torch.cat([shard(ids, r, 2) for r in range(2)]), ids)
    assert shard(ids, 0, 1) is ids
    with pytest.raises(ValueError, match="does not split over 3 processes"):
        shard(ids, 0, 3)
