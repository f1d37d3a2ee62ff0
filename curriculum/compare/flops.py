"""Training FLOPs per token, so arms with different block sizes are matched on the compute they really use.

Per token, forward plus backward (PaLM, Chowdhery et al. 2022, appendix B; Kaplan et al. 2020 count only the
score half of the attention term):

    6 * N  +  12 * n_layer * n_embd * T

N counts the weights of every matrix multiply a token goes through: 12 * n_layer * n_embd^2 in the blocks
(query/key/value 3d^2, output projection d^2, MLP 8d^2) plus vocab_size * n_embd for the output layer (the input
embedding is a lookup, not a product; norms and biases are negligible). The second term is attention's
scores and weighted sum over a context of T = block_size tokens, counted as the papers count it, without
halving for the causal mask. It is what makes a long-context step dearer per token than a short one.
"""

from __future__ import annotations

from model.config import ModelConfig

FORMULA = "6*N + 12*n_layer*n_embd*block_size, N = 12*n_layer*n_embd^2 + vocab_size*n_embd"


def matmul_params(model: ModelConfig, vocab_size: int) -> int:
    return 12 * model.n_layer * model.n_embd**2 + vocab_size * model.n_embd


def flops_per_token(model: ModelConfig, vocab_size: int, block_size: int) -> float:
    """Training FLOPs (forward + backward) per token at this block size; see the module docstring."""
    return 6.0 * matmul_params(model, vocab_size) + 12.0 * model.n_layer * model.n_embd * block_size
