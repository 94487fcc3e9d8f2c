"""Chapter 5's solutions: grouped-query keys and the order-3 in-projection."""

from __future__ import annotations

import torch


def expand_kv(
    weight: torch.Tensor, num_heads: int, num_kv_heads: int, head_dim: int
) -> torch.Tensor:
    """Repeat each key head num_heads // num_kv_heads times, so every query head has its own."""
    heads = weight.view(num_kv_heads, head_dim, -1)
    return heads.repeat_interleave(num_heads // num_kv_heads, dim=0).reshape(
        num_heads * head_dim, -1
    )


def order3_in_proj(q, k, v):
    """Gates [key, constant one, query] then the value, as (weight, bias) of one nn.Linear."""
    (q_weight, q_bias), (k_weight, k_bias), (v_weight, v_bias) = q, k, v
    weight = torch.cat([k_weight, torch.zeros_like(q_weight), q_weight, v_weight])
    bias = torch.cat([k_bias, torch.ones_like(q_bias), q_bias, v_bias])
    return weight, bias
