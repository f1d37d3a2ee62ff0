"""The GPT: shapes, causality, tied head, rotary positions that do not depend on the table size, limits."""

from __future__ import annotations

import math

import pytest
import torch

from model.config import ModelConfig
from model.gpt import GPT

VOCAB = 50257


def tiny(block_size: int = 32, **kw) -> ModelConfig:
    return ModelConfig(preset="tiny", block_size=block_size, **kw)


def test_forward_shapes_and_initial_loss_near_uniform():
    torch.manual_seed(0)
    model = GPT(tiny(), VOCAB)
    x = torch.randint(0, VOCAB, (3, 20))
    logits, loss = model(x, torch.roll(x, -1, 1))
    assert logits.shape == (3, 20, VOCAB)
    assert abs(loss.item() - math.log(VOCAB)) < 0.5  # small init: close to a uniform guess
    logits, loss = model(x)
    assert logits.shape == (3, 1, VOCAB) and loss is None  # generation path: last position only


def test_head_is_tied_to_the_embedding_and_counted_once():
    model = GPT(tiny(), VOCAB)
    assert model.lm_head.weight is model.transformer.wte.weight
    assert model.num_params() == sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    names = [name for name, _ in model.named_parameters()]
    assert "lm_head.weight" not in names and "transformer.wte.weight" in names
    assert not any("rope" in key for key in model.state_dict())  # derived tables are not weights


def test_attention_is_causal():
    torch.manual_seed(0)
    model = GPT(tiny(), VOCAB).eval()
    x = torch.randint(0, VOCAB, (1, 12))
    y = x.clone()
    y[0, 8:] = (y[0, 8:] + 1) % VOCAB  # change only the future
    with torch.no_grad():
        a, _ = model(x, x)
        b, _ = model(y, y)
    assert torch.equal(a[:, :8], b[:, :8])
    assert not torch.equal(a[:, 8:], b[:, 8:])


def test_rotary_positions_do_not_depend_on_the_longest_supported_context():
    # The same weights with a longer block_size give the same outputs on short inputs: what a short stage
    # learns is what a longer stage starts from.
    torch.manual_seed(0)
    short = GPT(tiny(block_size=16), VOCAB).eval()
    long = GPT(tiny(block_size=512), VOCAB).eval()
    long.load_state_dict(short.state_dict())
    x = torch.randint(0, VOCAB, (2, 16))
    with torch.no_grad():
        assert torch.equal(short(x, x)[0], long(x, x)[0])


def test_positions_matter():
    # The last token attends to the same four tokens in both inputs, only in another order: without position
    # information attention is order-blind and the two outputs would be equal.
    torch.manual_seed(0)
    model = GPT(tiny(), VOCAB).eval()
    x = torch.tensor([[11, 22, 33, 44]])
    swapped = torch.tensor([[22, 11, 33, 44]])
    with torch.no_grad():
        a, _ = model(x, x)
        b, _ = model(swapped, swapped)
    assert not torch.allclose(a[0, -1], b[0, -1])


def test_input_longer_than_block_size_is_refused():
    model = GPT(tiny(block_size=8), VOCAB)
    with pytest.raises(ValueError, match="input of 9 tokens is longer than the model's block_size=8"):
        model(torch.zeros(1, 9, dtype=torch.long))


def test_unresolved_block_size_is_refused():
    with pytest.raises(ValueError, match="block_size is None"):
        GPT(ModelConfig(preset="tiny"), VOCAB)
    assert ModelConfig(preset="tiny").with_block_size(512).block_size == 512
    assert ModelConfig(preset="tiny", block_size=256).with_block_size(512).block_size == 256


def test_odd_head_size_is_refused_by_the_config():
    with pytest.raises(ValueError, match="head size n_embd/n_head = 24/8 = 3 is odd"):
        ModelConfig(preset=None, n_layer=1, n_head=8, n_embd=24)


def test_optimizer_decays_matrices_only():
    model = GPT(tiny(bias=True), VOCAB)
    decay, no_decay = model.configure_optimizer(0.1, 1e-3, (0.9, 0.95), "cpu").param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_generate_extends_and_crops_to_block_size():
    torch.manual_seed(0)
    model = GPT(tiny(block_size=8), VOCAB).eval()
    idx = torch.randint(0, VOCAB, (1, 6))
    out = model.generate(idx, 5, temperature=1.0, top_k=10, generator=torch.Generator().manual_seed(1))
    assert out.shape == (1, 11) and torch.equal(out[:, :6], idx)
    again = model.generate(idx, 5, temperature=1.0, top_k=10, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out, again)
    greedy = model.generate(idx, 3, temperature=0)
    assert greedy.shape == (1, 9)


def test_presets_fill_unset_fields():
    assert ModelConfig(preset="gpt2").n_layer == 12
    assert ModelConfig(preset="small", n_layer=2).n_layer == 2
