"""Shared layers: group rule, relative-position buckets, AttentionBlock layout, contrastive loss."""

import math

import torch
import torch.nn.functional as F

from tortoise.models.layers import AttentionBlock, contrastive_loss, normalization, relative_position_bucket


def test_group_rule_matches_the_official_normalization():
    assert normalization(512).num_groups == 32
    assert normalization(32).num_groups == 16
    assert normalization(16).num_groups == 8
    assert normalization(80).num_groups == 16  # 32 does not divide 80


def test_relative_buckets_follow_the_t5_rule():
    rel = torch.tensor([0, 1, 7, 8, 20, 63, 200, -1, -8, -200])  # key - query
    got = relative_position_bucket(rel, num_buckets=32, max_distance=64).tolist()
    # n = query - key: n >= 0 -> buckets 0..15, n < 0 -> 16 + ...
    want = [0, 16 + 1, 16 + 7, 16 + 8, 16 + 8 + int(math.log(20 / 8) / math.log(8) * 8), 31, 31, 1, 8, 15]
    assert got == want


def test_attention_block_is_residual_and_uses_per_head_qkv_blocks():
    torch.manual_seed(0)
    block = AttentionBlock(8, num_heads=2).eval()
    x = torch.randn(1, 8, 5)
    with torch.no_grad():
        block.proj_out.weight.zero_()
        block.proj_out.bias.zero_()
        assert torch.equal(block(x), x)  # zero projection: pure residual
        torch.manual_seed(1)
        block.proj_out.weight.normal_()
        out = block(x)
        # reference: heads own contiguous [q|k|v] blocks of 3*d channels
        qkv = block.qkv(block.norm(x)).reshape(2, 12, 5)
        q, k, v = qkv[:, :4], qkv[:, 4:8], qkv[:, 8:]
        w = torch.softmax(torch.einsum("hct,hcs->hts", q, k) / math.sqrt(4), dim=-1)
        h = torch.einsum("hts,hcs->hct", w, v).reshape(1, 8, 5)
        torch.testing.assert_close(out, x + block.proj_out(h))


def test_contrastive_loss_prefers_matched_pairs_and_is_symmetric():
    torch.manual_seed(0)
    a = F.normalize(torch.randn(4, 16), dim=-1)
    temperature = torch.tensor(2.0)
    matched = contrastive_loss(a, a, temperature)
    shuffled = contrastive_loss(a, a[[1, 2, 3, 0]], temperature)
    assert matched < shuffled
    b = F.normalize(torch.randn(4, 16), dim=-1)
    torch.testing.assert_close(contrastive_loss(a, b, temperature), contrastive_loss(b, a, temperature))
