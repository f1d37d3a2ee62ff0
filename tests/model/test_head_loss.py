"""The chunked head loss (model/head_loss.py) gives the plain path's loss and gradients, never holding the logits."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from model import head_loss as head_loss_module
from model.config import ModelConfig
from model.gpt import GPT
from model.head_loss import head_loss

VOCAB = 50257


def _grads(model: GPT) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in model.named_parameters()}


def _close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-6) -> bool:
    return bool((a - b).abs().max() <= rel * b.abs().max() + 1e-12)


def test_a_models_loss_and_every_gradient_match_the_plain_path():
    torch.manual_seed(0)
    model = GPT(ModelConfig(preset="tiny", block_size=64), VOCAB)
    x = torch.randint(0, VOCAB, (3, 64))  # 192 positions: a chunk of 128 and a partial one
    y = torch.roll(x, -1, 1)
    y[:, -5:] = -1  # positions without a target are ignored by both
    logits, plain = model(x, y)
    plain.backward()
    want = _grads(model)
    model.zero_grad(set_to_none=True)
    none, chunked = model(x, y, return_logits=False)
    chunked.backward()
    assert none is None and logits is not None
    assert abs(chunked.item() - plain.item()) <= 1e-6 * plain.item()
    got = _grads(model)
    assert all(_close(got[name], want[name]) for name in want), [n for n in want if not _close(got[n], want[n])]


def test_without_gradients_it_gives_the_same_loss_and_stores_nothing():
    torch.manual_seed(1)
    hidden, weight = torch.randn(300, 16), torch.randn(1000, 16)
    targets = torch.randint(0, 1000, (300,))
    with torch.no_grad():
        loss = head_loss(hidden, weight, targets)
    assert not loss.requires_grad
    assert abs(loss.item() - F.cross_entropy(hidden @ weight.t(), targets).item()) < 1e-5


def test_gradients_accumulate_over_micro_batches_as_the_plain_path_does():
    torch.manual_seed(2)
    weight = torch.randn(500, 8, requires_grad=True)
    batches = [(torch.randn(130, 8, requires_grad=True), torch.randint(0, 500, (130,))) for _ in range(2)]
    for h, t in batches:
        (F.cross_entropy(h @ weight.t(), t) / 2).backward()
    want = weight.grad.clone()
    weight.grad = None
    for h, t in batches:
        (head_loss(h, weight, t) / 2).backward()
    assert _close(weight.grad, want)


def test_chunks_do_not_change_the_loss(monkeypatch):
    torch.manual_seed(3)
    hidden = torch.randn(257, 8, requires_grad=True)
    weight = torch.randn(300, 8)
    targets = torch.randint(0, 300, (257,))
    whole = head_loss(hidden, weight, targets)
    monkeypatch.setattr(head_loss_module, "CHUNK_ROWS", 7)
    assert abs(head_loss(hidden, weight, targets).item() - whole.item()) < 1e-5


def test_under_autocast_the_model_takes_the_plain_path():
    model = GPT(ModelConfig(preset="tiny", block_size=16), VOCAB)
    x = torch.randint(0, VOCAB, (2, 16))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, loss = model(x, torch.roll(x, -1, 1), return_logits=False)
    assert logits is not None and loss is not None  # the plain path: it keeps its bf16 log-softmax
