"""A GPT language model in one file, after nanoGPT's model.py.

Differences from GPT-2 / nanoGPT, each for a reason:
- Positions are rotary embeddings (RoPE), not a learned table. A curriculum trains on 128-token contexts
  first and 512-token contexts last. A learned table sized to 512 would leave rows 128..511 at their random
  initial values through the whole warmup stage, and the next stage would start by reading noise at every
  new position. Rotary embeddings have no parameters: attention depends on the relative offset between two
  tokens, which the short stages already train, so what is learned at 128 carries over to 512.
  `config.block_size` is still a hard limit: it sizes the precomputed sine/cosine tables, and a longer input
  is refused rather than silently extrapolated.
- The vocabulary size comes from the tokenizer that made the data (the shard header), so it is a constructor
  argument, not a config field. The embedding and head are padded to a multiple of 64 rows (50,257 ->
  50,304 for GPT-2's BPE): matrix kernels run faster on aligned sizes (+6 % tokens/s measured on a CPU). The
  padding rows are never a target, training pushes their logits down, and the logits the model returns leave them out.
- Under bf16/fp16 autocast, the log-softmax over the vocabulary runs in that precision (the mean of the
  picked log-probabilities in fp32). Autocast would compute it in fp32, copying the (B, T, V) logits, by far
  the largest tensor, to fp32 and back: with it in bf16 a CPU step is ~35 % faster, and the losses of the
  first iterations stay as close to an fp32 run's as with the fp32 log-softmax (bench/bench_train.py prints both).

Shapes: B batch, T time (sequence length), C channels (n_embd), nh heads, hs head size (C // nh), V vocab.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch.nn import functional as F

from model.config import ModelConfig
from model.head_loss import head_loss

ROPE_BASE = 10_000.0
VOCAB_MULTIPLE = 64


def next_token_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of logits (B, T, V) against targets (B, T); targets of -1 are ignored."""
    flat, target = logits.view(-1, logits.size(-1)), targets.reshape(-1)  # (B*T, V), (B*T,)
    if flat.dtype == torch.float32:
        return F.cross_entropy(flat, target, ignore_index=-1)
    with torch.autocast(device_type=flat.device.type, enabled=False):  # keep the autocast dtype (see above)
        logp = F.log_softmax(flat, dim=-1)  # (B*T, V) in bf16/fp16; the kernel accumulates in fp32
    valid = target != -1
    picked = logp.gather(1, target.clamp(min=0).unsqueeze(1)).squeeze(1).float()  # (B*T,)
    return -(picked * valid).sum() / valid.sum().clamp(min=1)


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (PyTorch's has no `bias=False` for all versions we support)."""

    def __init__(self, ndim: int, bias: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


def rope_tables(block_size: int, head_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of position * frequency, each (block_size, hs), frequencies repeated for both halves."""
    inv_freq = 1.0 / (ROPE_BASE ** (torch.arange(0, head_size, 2, dtype=torch.float32) / head_size))  # (hs/2,)
    angles = torch.outer(torch.arange(block_size, dtype=torch.float32), inv_freq)  # (block_size, hs/2)
    angles = torch.cat((angles, angles), dim=-1)  # (block_size, hs)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each (x_i, x_{i+hs/2}) pair of x (B, nh, T, hs) by its position's angle."""
    half = x.size(-1) // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)  # (B, nh, T, hs)
    return x * cos.to(x.dtype) + rotated * sin.to(x.dtype)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.dropout = config.dropout
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v for all heads
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)  # 3 x (B, T, C)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True
        )  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble all head outputs side by side
        return self.resid_dropout(self.c_proj(y))  # (B, T, C)


class MLP(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))  # (B, T, 4C) inside, (B, T, C) out


class Block(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cos, sin)
        x = x + self.mlp(self.ln_2(x))
        return x


class _Trunk(nn.ModuleDict):
    """The ModuleDict of GPT's embedding, blocks and final norm; the annotations only tell the type checker what
    nn.Module's attribute lookup returns for each key."""

    wte: nn.Embedding
    drop: nn.Dropout
    h: nn.ModuleList
    ln_f: LayerNorm


class GPT(nn.Module):
    rope_cos: torch.Tensor  # buffers registered in __init__; declared for the type checker
    rope_sin: torch.Tensor

    def __init__(self, config: ModelConfig, vocab_size: int):
        super().__init__()
        if config.block_size is None:
            raise ValueError(
                "ModelConfig.block_size is None; resolve it before building the model, e.g. "
                "config.with_block_size(curriculum.max_block_size)"
            )
        self.config = config
        self._block_size: int = config.block_size  # config.block_size, known here not to be None
        self.vocab_size = vocab_size
        padded = -(-vocab_size // VOCAB_MULTIPLE) * VOCAB_MULTIPLE
        self.transformer = _Trunk(
            dict(
                wte=nn.Embedding(padded, config.n_embd),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                ln_f=LayerNorm(config.n_embd, bias=config.bias),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, padded, bias=False)
        # Weight tying (https://paperswithcode.com/method/weight-tying): the input embedding and the output
        # projection share one matrix; fewer parameters and better small models.
        self.transformer.wte.weight = self.lm_head.weight
        # Derived from the config, not learned: kept out of the state dict so checkpoints hold weights only.
        cos, sin = rope_tables(self._block_size, config.n_embd // config.n_head)
        self.register_buffer("rope_cos", cos, persistent=False)  # (block_size, hs)
        self.register_buffer("rope_sin", sin, persistent=False)  # (block_size, hs)

        self.apply(self._init_weights)
        # GPT-2's scaled init of the projections that write into the residual stream: their sum over
        # 2 * n_layer residual additions keeps the stream's variance in check.
        for name, param in self.named_parameters():
            if name.endswith("c_proj.weight"):
                torch.nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self) -> int:
        """Parameters, counting the tied embedding/head matrix once."""
        return sum(p.numel() for p in self.parameters())

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None, return_logits: bool = True
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(logits, loss). With targets and return_logits=False (training and evaluation), a float32 run
        computes the loss with model/head_loss.py, which never holds the (B, T, V) logits, and returns None for
        them; under autocast or torch.compile it takes the plain path and returns the logits too."""
        B, T = idx.size()
        if T > self._block_size:
            raise ValueError(
                f"input of {T} tokens is longer than the model's block_size={self._block_size}; "
                "crop the input or build the model with a larger model.block_size"
            )
        cos, sin = self.rope_cos[:T], self.rope_sin[:T]  # (T, hs)
        x = self.transformer.drop(self.transformer.wte(idx))  # (B, T, C)
        for block in self.transformer.h:
            x = block(x, cos, sin)
        x = self.transformer.ln_f(x)  # (B, T, C)
        if targets is not None and not return_logits and self._fused_head(x):
            return None, head_loss(x.view(B * T, -1), self.lm_head.weight, targets.reshape(-1))
        if targets is not None:
            logits = self.lm_head(x)  # (B, T, padded V)
            return logits[..., : self.vocab_size], next_token_loss(logits, targets)  # (B, T, V) view
        # Generation needs only the last position's distribution: skip the (B, T, V) product.
        logits = self.lm_head(x[:, [-1], :])  # (B, 1, padded V)
        return logits[..., : self.vocab_size], None

    @staticmethod
    def _fused_head(x: torch.Tensor) -> bool:
        """Whether the loss can take model/head_loss.py's path: float32 outside autocast and torch.compile (the
        compiled graph fuses the plain path itself; under autocast the plain path keeps its bf16 log-softmax)."""
        return (x.dtype == torch.float32 and not torch.is_autocast_enabled(x.device.type)
                and not torch.compiler.is_compiling())

    def configure_optimizer(
        self, weight_decay: float, learning_rate: float, betas: tuple[float, float], device_type: str
    ) -> torch.optim.AdamW:
        """AdamW that decays matrices (embeddings, linear weights) but not biases and LayerNorm gains."""
        params = dict(self.named_parameters())  # the tied matrix appears once
        decay = [p for p in params.values() if p.dim() >= 2]
        no_decay = [p for p in params.values() if p.dim() < 2]
        groups = [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        # The fused CUDA kernel is faster; CPU and MPS use the default (foreach) implementation.
        extra = {"fused": True} if device_type == "cuda" else {}
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, **extra)

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Extend idx (B, T) by max_new_tokens sampled tokens; the context is cropped to block_size."""
        for _ in range(max_new_tokens):
            idx_cond = idx if idx.size(1) <= self._block_size else idx[:, -self._block_size :]
            logits, _ = self(idx_cond)
            logits = logits[:, -1, :].float()  # (B, V)
            if temperature == 0:
                idx_next = logits.argmax(dim=-1, keepdim=True)  # (B, 1)
            else:
                logits = logits / temperature
                if top_k is not None:
                    v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
                    logits[logits < v[:, [-1]]] = -float("inf")
                probs = F.softmax(logits, dim=-1)
                idx_next = torch.multinomial(probs, num_samples=1, generator=generator)  # (B, 1)
            idx = torch.cat((idx, idx_next), dim=1)  # (B, T+1)
        return idx
