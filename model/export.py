"""A trained model as a Hugging Face folder: `transformers` loads it with a built-in architecture, no remote code.

    python -m model.export --checkpoint out/runs/simple/final --out out/hf/simple

The architecture is GPT-NeoX (`GPTNeoXForCausalLM`, the one Pythia uses), because it represents this GPT
exactly: rotary embeddings over the whole head (`partial_rotary_factor: 1.0`, base 10,000) in the same
rotate-half layout, LayerNorm (eps 1e-5) before attention and before the MLP, an exact-erf GELU MLP 4x wide,
the sequential residual (`use_parallel_residual: false`) and the output head tied to the input embedding. Llama
has RMSNorm and a gated MLP, GPT-2 learned positions, so neither fits. GPT-NeoX keeps biases in its MLP and
norms: a model trained with `bias: false` is written with zero biases there (and none in attention), which
computes the same function. The vocabulary stays padded (50,304 rows; the tokenizer's 50,257 ids are the
first), as Pythia's is. The tokenizer is GPT-2's BPE rebuilt from the tiktoken ranks named in config.json
(model/hf_tokenizer.py), written as transformers' GPT2Tokenizer (tokenizers-backed, `tokenizer.json`), offline.

Needs the `hf` extra: pip install -e ".[hf]".
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import cast

import torch

from model.gpt import GPT, Block
from model.hf_tokenizer import gpt2_vocab_and_merges
from model.pretrained import load_pretrained


class ExportError(Exception):
    """The checkpoint cannot be exported (what is wrong and what to run instead)."""


def neox_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """The model's weights under GPT-NeoX's names and layout (zero biases where this model has none)."""
    cfg = model.config
    n_head, width = cfg.n_head, cfg.n_embd
    hs = width // n_head

    def bias_of(linear: torch.nn.Linear | object, size: int) -> torch.Tensor:
        bias = getattr(linear, "bias", None)
        return bias.detach().clone() if bias is not None else torch.zeros(size)

    out: dict[str, torch.Tensor] = {"gpt_neox.embed_in.weight": model.transformer.wte.weight.detach().clone()}
    for i, block in enumerate(cast(list[Block], list(model.transformer.h))):
        p = f"gpt_neox.layers.{i}."
        # Ours: rows [q of all heads | k | v]; NeoX: per head [q_h | k_h | v_h] (its view(..., nh, 3 * hs)).
        order = torch.cat([torch.arange(part * width + h * hs, part * width + (h + 1) * hs)
                           for h in range(n_head) for part in range(3)])
        out[p + "attention.query_key_value.weight"] = block.attn.c_attn.weight.detach()[order].clone()
        if cfg.bias:
            out[p + "attention.query_key_value.bias"] = block.attn.c_attn.bias.detach()[order].clone()
            out[p + "attention.dense.bias"] = block.attn.c_proj.bias.detach().clone()
        out[p + "attention.dense.weight"] = block.attn.c_proj.weight.detach().clone()
        for ours, theirs in ((block.ln_1, "input_layernorm"), (block.ln_2, "post_attention_layernorm")):
            out[p + theirs + ".weight"] = ours.weight.detach().clone()
            out[p + theirs + ".bias"] = bias_of(ours, width)
        out[p + "mlp.dense_h_to_4h.weight"] = block.mlp.c_fc.weight.detach().clone()
        out[p + "mlp.dense_h_to_4h.bias"] = bias_of(block.mlp.c_fc, 4 * width)
        out[p + "mlp.dense_4h_to_h.weight"] = block.mlp.c_proj.weight.detach().clone()
        out[p + "mlp.dense_4h_to_h.bias"] = bias_of(block.mlp.c_proj, width)
    out["gpt_neox.final_layer_norm.weight"] = model.transformer.ln_f.weight.detach().clone()
    out["gpt_neox.final_layer_norm.bias"] = bias_of(model.transformer.ln_f, width)
    out["embed_out.weight"] = out["lm_head.weight"] = out["gpt_neox.embed_in.weight"]
    return out


def export(checkpoint: str | Path, out: str | Path) -> Path:
    """Write the Hugging Face folder of `checkpoint` (a folder with model.safetensors and config.json) to `out`,
    through a temporary folder renamed into place: a folder at `out` is whole."""
    try:
        from transformers import GPTNeoXConfig, GPTNeoXForCausalLM
        from transformers.models.gpt2.tokenization_gpt2 import GPT2Tokenizer  # the fast, tokenizers-backed one
    except ImportError as error:
        raise ExportError(f"exporting needs transformers ({error}); install the extra: pip install -e \".[hf]\"") \
            from None
    model, card = load_pretrained(checkpoint)
    if card.get("tokenizer") != "r50k_base":
        raise ExportError(f"{checkpoint}: tokenizer {card.get('tokenizer')!r}; the export rebuilds GPT-2's BPE "
                          "(r50k_base) only")
    cfg = model.config
    out = Path(out)
    if out.exists():
        raise ExportError(f"--out {out} exists; give a new folder (or remove it first)")
    config = GPTNeoXConfig(
        vocab_size=model.lm_head.weight.shape[0], hidden_size=cfg.n_embd, num_hidden_layers=cfg.n_layer,
        num_attention_heads=cfg.n_head, intermediate_size=4 * cfg.n_embd, hidden_act="gelu",
        max_position_embeddings=int(model.rope_cos.shape[0]), layer_norm_eps=1e-5, use_parallel_residual=False,
        attention_bias=cfg.bias, tie_word_embeddings=True, attention_dropout=0.0, hidden_dropout=0.0,
        rope_parameters={"rope_type": "default", "rope_theta": 10_000.0, "partial_rotary_factor": 1.0},
        bos_token_id=card.get("eot_token"), eos_token_id=card.get("eot_token"),
    )
    hf = GPTNeoXForCausalLM(config)
    weights = neox_state_dict(model)
    wanted = hf.state_dict()
    missing, unexpected = sorted(set(wanted) - set(weights)), sorted(set(weights) - set(wanted) - {"lm_head.weight",
                                                                                                  "embed_out.weight"})
    if missing or unexpected:
        raise ExportError(f"this transformers' GPT-NeoX has other weights: missing {missing[:4]}, unexpected "
                          f"{unexpected[:4]}; the export was written for transformers 5")
    hf.load_state_dict({k: v for k, v in weights.items() if k in wanted}, strict=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        staging = Path(tmp) / "export"
        staging.mkdir()
        hf.save_pretrained(staging)
        vocab, merges = gpt2_vocab_and_merges(card["tokenizer"])
        # Merges as (a, b) pairs, which the tokenizers backend takes (its "a b" strings failed to parse here).
        tokenizer = GPT2Tokenizer(vocab=vocab, merges=merges,  # type: ignore[arg-type]
                                  add_prefix_space=False, model_max_length=int(model.rope_cos.shape[0]))
        tokenizer.save_pretrained(staging)
        staging.rename(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="folder with model.safetensors and config.json "
                        "(a run's final/ or a checkpoints/<stage>/end folder)")
    parser.add_argument("--out", required=True, help="the Hugging Face folder to write (must not exist)")
    args = parser.parse_args(argv)
    try:
        folder = export(args.checkpoint, args.out)
    except (ExportError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"exported: {folder} (GPTNeoXForCausalLM + GPT2Tokenizer); load it with "
          f"AutoModelForCausalLM.from_pretrained({str(folder)!r})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
