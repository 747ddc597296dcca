"""The point tokenizer and the Perceiver: shapes, gradients, masking, wiring, config handling."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from s23dr.features import PointTokenizer, one_hot_embed
from s23dr.model import Attention, Perceiver, cross_attn_layers, output_tensors, param_groups

BASE = yaml.safe_load((Path(__file__).parents[1] / "params" / "base.yaml").read_text())
SMALL = {**BASE["model"], "hidden": 32, "ff": 64, "latent_tokens": 8, "latent_layers": 3,
         "decoder_layers": 2, "segments": 16, "fourier_freqs": 8, "dropout": 0.0}


def make_batch(B=2, S=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "xyz_norm": torch.rand(B, S, 3, generator=g) - 0.5,
        "class_id": torch.randint(0, 13, (B, S), generator=g, dtype=torch.uint8),
        "source": torch.randint(0, 2, (B, S), generator=g, dtype=torch.uint8),
        "behind": torch.randint(-1, 28, (B, S), generator=g, dtype=torch.int16),
        "n_views_voted": torch.randint(0, 8, (B, S), generator=g, dtype=torch.uint8),
        "vote_frac": torch.rand(B, S, generator=g),
        "mask": torch.ones(B, S, dtype=torch.bool),
    }


def pad_batch(batch, extra, seed=1):
    """Append `extra` padded points holding garbage (huge, inf, NaN coordinates; random ids)."""
    g = torch.Generator().manual_seed(seed)
    B = batch["mask"].shape[0]
    junk_xyz = torch.randn(B, extra, 3, generator=g) * 1e4
    junk_xyz[:, 0, 0], junk_xyz[:, -1, 1] = float("nan"), float("inf")
    junk = make_batch(B, extra, seed=seed)
    junk["xyz_norm"], junk["mask"] = junk_xyz, torch.zeros(B, extra, dtype=torch.bool)
    junk["n_views_voted"] = junk["n_views_voted"] * 1e6
    return {k: torch.cat([batch[k], junk[k]], dim=1) for k in batch}


def random_loss(out, seed=0):
    """A random linear function of every output tensor, the earlier decoder layers' too."""
    g = torch.Generator().manual_seed(seed)
    return sum((v * torch.randn(v.shape, generator=g)).sum() for v in output_tensors(out))


def test_output_shapes_and_dtypes():
    model = Perceiver(**SMALL)
    out = model(make_batch(B=3, S=40))
    assert out["segments"].shape == (3, 16, 2, 3) and out["conf_logits"].shape == (3, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(make_batch(B=3, S=40))
    assert out["segments"].dtype == torch.float32 and out["conf_logits"].dtype == torch.float32
    assert torch.isfinite(out["segments"]).all()


def test_head_builds_endpoints_from_midpoint_direction_length():
    model = Perceiver(**SMALL)
    with torch.no_grad():
        model.segment_head.weight.zero_()
        model.segment_head.bias.copy_(torch.tensor([0.1, 0.0, 0.0, 0.0, 3.0, 4.0, 0.0]))
    seg = model(make_batch())["segments"]
    mid = model.query_offset + torch.tensor([0.1, 0.0, 0.0])
    half = torch.tensor([0.0, 0.6, 0.8]) * torch.log(torch.tensor(2.0)) * 0.1 / 2  # softplus(0) = log 2
    torch.testing.assert_close(seg[0, :, 0], (mid - half).detach())
    torch.testing.assert_close(seg[0, :, 1], (mid + half).detach())


def warmed_up(model, steps=2):
    """The model after `steps` Adam steps on a random loss, in eval mode. Zero-initialised output
    projections wake up from the output backwards: the decoder's after the first step, the
    encoder's after the second; only then does the output depend on the points."""
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(steps):
        opt.zero_grad()
        random_loss(model(make_batch()), seed=step).backward()
        opt.step()
    return model.eval()


@pytest.mark.parametrize("decoder_reads_points", [False, True])
def test_gradients_reach_every_parameter(decoder_reads_points):
    model = warmed_up(Perceiver(**{**SMALL, "decoder_reads_points": decoder_reads_points})).train()
    model.zero_grad()
    random_loss(model(make_batch()), seed=9).backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead, f"no gradient for {dead}"


@pytest.mark.parametrize("switch", [{}, {"decoder_reads_points": True}])
def test_padded_points_do_not_change_the_output(switch):
    model = warmed_up(Perceiver(**{**SMALL, **switch}))
    batch = make_batch(S=30)
    with torch.no_grad():
        ref, padded = model(batch), model(pad_batch(batch, extra=25))
        other = model(make_batch(S=30, seed=5))
    for key in ref:  # the head starts at std 1e-3 (the seed's), so outputs move by ~1e-4 at first
        torch.testing.assert_close(padded[key], ref[key], atol=1e-6, rtol=1e-5)
    assert not torch.allclose(other["segments"], ref["segments"], atol=1e-5), "output ignores the points"


def test_output_is_invariant_to_point_order():
    model = warmed_up(Perceiver(**SMALL))
    batch = make_batch(S=30)
    perm = torch.randperm(30)
    shuffled = {k: v[:, perm] for k, v in batch.items()}
    with torch.no_grad():
        torch.testing.assert_close(model(shuffled)["segments"], model(batch)["segments"], atol=1e-5, rtol=1e-5)


def test_grouped_heads_are_standard_grouped_query_attention():
    """Attention folds the query heads of one kv head into one sequence: it must equal the plain
    reading, where query head h attends with kv head h // (num_heads / kv_heads), and keep
    F.normalize's qk-norm, so that a checkpoint means what it says."""
    torch.manual_seed(0)
    attn = Attention(dim=16, num_heads=4, kv_heads=2, qk_norm=True)
    torch.nn.init.normal_(attn.out.weight)  # zero at init would hide any mix-up
    with torch.no_grad():
        attn.log_scale.copy_(torch.randn(4))
    x, context, mask = torch.randn(3, 5, 16), torch.randn(3, 7, 16), torch.rand(3, 7) > 0.3
    mask[:, 0] = True

    q = F.normalize(attn.q(x).view(3, 5, 4, 4).transpose(1, 2), dim=-1) * attn.log_scale.exp()[:, None, None]
    k, v = attn.kv(context).view(3, 7, 2, 2, 4).permute(2, 0, 3, 1, 4)
    k, v = F.normalize(k, dim=-1).repeat_interleave(2, dim=1), v.repeat_interleave(2, dim=1)
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :], scale=1.0)
    torch.testing.assert_close(attn(x, context, mask), attn.out(y.transpose(1, 2).reshape(3, 5, 16)))


def test_cross_attention_placement():
    assert cross_attn_layers(7, 4) == (0, 4, 6)
    assert cross_attn_layers(1, 4) == (0,)
    assert cross_attn_layers(8, 2) == (0, 2, 4, 6, 7)
    model = Perceiver(**{**SMALL, "latent_layers": 7, "cross_attn_interval": 4})
    assert tuple(i for i, layer in enumerate(model.encoder) if layer.cross is not None) == (0, 4, 6)
    assert all(layer.cross is not None for layer in model.decoder)
    with pytest.raises(ValueError, match="cross_attn_interval"):
        cross_attn_layers(7, 0)


def test_tokenizer_switches_set_out_dim():
    full = dict(fourier_freqs=32, fourier_scale=10.0, class_emb_dim=16, source_emb_dim=2,
                behind_emb_dim=8, vote_features=True)
    assert PointTokenizer(**full).out_dim == 3 + 64 + 16 + 2 + 8 + 2
    for key, off, drop in [("fourier_freqs", 0, 64), ("class_emb_dim", 0, 16), ("source_emb_dim", 0, 2),
                           ("behind_emb_dim", 0, 8), ("vote_features", False, 2)]:
        tok = PointTokenizer(**{**full, key: off})
        assert tok.out_dim == 95 - drop, key
        assert tok(make_batch(S=10)).shape == (2, 10, tok.out_dim), key
    minimal = PointTokenizer(0, 10.0, 0, 0, 0, False)
    assert minimal({"xyz_norm": torch.zeros(1, 4, 3), "mask": torch.ones(1, 4, dtype=torch.bool)}).shape == (1, 4, 3)


def test_tokenizer_fourier_matrix_is_seeded_and_saved():
    a, b = PointTokenizer(32, 10.0, 16, 2, 8, True), PointTokenizer(32, 10.0, 16, 2, 8, True)
    assert torch.equal(a.fourier, b.fourier)
    assert "fourier" in a.state_dict()
    assert 8 < a.fourier.std() < 12  # scale 10


def test_one_hot_embedding_is_the_lookup_forward_and_backward():
    # CUDA embeds this way (features.embed); its backward sums the rows' gradients by a matmul.
    table = torch.nn.Embedding(29, 8)
    ids = make_batch()["behind"].clamp_min(0)
    grad = torch.randn(*ids.shape, 8, generator=torch.Generator().manual_seed(0))
    lookup = table(ids.long())
    (lookup_grad,) = torch.autograd.grad(lookup, table.weight, grad)
    one_hot = one_hot_embed(table, ids)
    (one_hot_grad,) = torch.autograd.grad(one_hot, table.weight, grad)
    assert torch.equal(one_hot, lookup)
    torch.testing.assert_close(one_hot_grad, lookup_grad)


def test_tokenizer_names_a_missing_field():
    batch = make_batch()
    del batch["vote_frac"]
    with pytest.raises(ValueError, match="vote_frac"):
        PointTokenizer(32, 10.0, 16, 2, 8, True)(batch)


def test_full_config_builds_and_reports_its_size():
    model = Perceiver(**BASE["model"])
    n = sum(p.numel() for p in model.parameters())
    print(f"full base.yaml Perceiver: {n:,} parameters")
    assert 8e6 < n < 1e7
    assert model.cross_layers == (0, 4, 6)
    head_dim = BASE["model"]["hidden"] // BASE["model"]["num_heads"]
    torch.testing.assert_close(model.encoder[0].cross.attn.log_scale.exp(), torch.full((4,), head_dim ** 0.5))


def test_config_errors_name_the_key():
    with pytest.raises(TypeError, match="bogus"):
        Perceiver(**SMALL, bogus=1)
    with pytest.raises(TypeError, match="hidden"):
        Perceiver(**{k: v for k, v in SMALL.items() if k != "hidden"})


def test_norm_and_attention_switches():
    for rms_norm, qk_norm in [(False, False), (True, False), (False, True)]:
        model = Perceiver(**{**SMALL, "rms_norm": rms_norm, "qk_norm": qk_norm, "kv_heads_self": 4})
        assert torch.isfinite(model(make_batch())["segments"]).all()
    assert "conf_logits" not in Perceiver(**{**SMALL, "segment_conf": False})(make_batch())


def test_param_groups_cover_every_parameter_once():
    model = Perceiver(**SMALL)
    groups = {g["name"]: g for g in param_groups(model, weight_decay=0.01, head_wd=0.1)}
    ids = [id(p) for g in groups.values() for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())
    assert {id(p) for p in groups["head"]["params"]} == {id(p) for p in model.conf_head.parameters()}
    assert groups["head"]["weight_decay"] == 0.1 and groups["decay"]["weight_decay"] == 0.01
    no_decay = {id(p) for p in groups["no_decay"]["params"]}
    for p in (model.latents, model.queries, model.query_offset, model.tokenizer.class_emb.weight,
              model.encoder[0].self_attn.attn.log_scale, model.point_norm.weight):
        assert id(p) in no_decay
    assert all(p.ndim == 2 for p in groups["decay"]["params"])
    torch.optim.AdamW(param_groups(model, 0.01, 0.1), betas=(0.9, 0.95))  # accepted as is
