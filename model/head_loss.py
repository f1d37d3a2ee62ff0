"""The output head and its cross-entropy in one pass, a chunk of positions at a time, for float32 training.

The plain path materialises the (B*T, V) logits, their log-softmax, and in the backward pass the log-softmax's
gradient and a zero-filled buffer for it: with GPT-2's 50,304-row head these are by far the largest tensors of a
small model's step, and on a CPU the passes over them cost more than the matrix products of the whole trunk.
Here each chunk of positions computes its logits, turns them in place into the loss's gradient with respect to
the logits (softmax minus the one-hot target, divided by the number of targets) and multiplies it straight into
the gradients of the hidden states and of the head's matrix. Nothing of size (B*T, V) is ever kept: the
backward pass only scales the gradients the forward pass stored. bench/bench_head_loss.py measures it against
the plain path in the same run (a whole training step of the study's 4-layer, 128-wide model:
tokens per second on one CPU thread: 1.49x measured, see docs/testing.md).

The loss is F.cross_entropy's over the same logits (targets of -1 ignored) up to float32 rounding: the tests
hold the loss and both gradients to 1e-6 relative of the plain path.
"""

from __future__ import annotations

import torch

CHUNK_ROWS = 128  # positions per chunk: a (128, V) float32 block stays in a CPU's cache (faster than 64 or 512)


def head_loss(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of `hidden @ weight.T` against `targets`: hidden (N, C), weight (V, C), targets (N,)
    with -1 for positions that carry no target. Differentiable in `hidden` and `weight`."""
    if torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad):
        return _HeadLoss.apply(hidden, weight, targets)
    return _forward(hidden, weight, targets, want_hidden=False, want_weight=False)[0]


def _forward(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, want_hidden: bool, want_weight: bool
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """(mean loss, its gradient with respect to hidden or None, with respect to weight or None)."""
    n_valid = (targets != -1).sum().clamp(min=1).to(torch.float32)
    grad_hidden = torch.empty_like(hidden) if want_hidden else None
    grad_weight = torch.zeros_like(weight) if want_weight else None
    total = torch.zeros((), dtype=torch.float32, device=hidden.device)
    for start in range(0, hidden.size(0), CHUNK_ROWS):
        h = hidden[start : start + CHUNK_ROWS]  # (n, C)
        target = targets[start : start + CHUNK_ROWS]  # (n,)
        valid = target != -1
        picked = target.clamp(min=0).unsqueeze(1)  # (n, 1)
        logits = h @ weight.t()  # (n, V)
        lse = torch.logsumexp(logits, dim=1, keepdim=True)  # (n, 1)
        total += ((lse - logits.gather(1, picked)).squeeze(1) * valid).sum()
        if grad_hidden is None and grad_weight is None:
            continue
        grad = logits.sub_(lse).exp_()  # softmax, in place of the logits
        grad.scatter_add_(1, picked, -valid.to(grad.dtype).unsqueeze(1))  # minus the one-hot target
        grad.mul_((valid.to(grad.dtype) / n_valid).unsqueeze(1))  # mean over targets; ignored rows get zero
        if grad_hidden is not None:
            torch.mm(grad, weight, out=grad_hidden[start : start + CHUNK_ROWS])
        if grad_weight is not None:
            grad_weight.addmm_(grad.t(), h)
    return total / n_valid, grad_hidden, grad_weight


class _HeadLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        loss, grad_hidden, grad_weight = _forward(
            hidden, weight, targets, want_hidden=ctx.needs_input_grad[0], want_weight=ctx.needs_input_grad[1]
        )
        ctx.grads = (grad_hidden, grad_weight)  # computed here, not inputs or outputs: kept on ctx
        return loss

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):
        grad_hidden, grad_weight = ctx.grads
        ctx.grads = None  # free them once used
        return (
            None if grad_hidden is None else grad_hidden * grad_loss,
            None if grad_weight is None else grad_weight * grad_loss,
            None,
        )
