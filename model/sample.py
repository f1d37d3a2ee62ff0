"""Print text a trained model writes after a prompt.

    python -m model.sample --checkpoint out/runs/simple/final --prompt "Once upon a time"

`--checkpoint` is a folder with model.safetensors and config.json: a run's final/ folder or any of its
checkpoint folders. The tokenizer is the tiktoken encoding named in config.json (offline: set
TIKTOKEN_CACHE_DIR to a folder holding its file, e.g. ../shared/tiktoken).
"""

from __future__ import annotations

import argparse
import sys

import torch

from model.pretrained import load_pretrained


def sample(
    checkpoint: str,
    prompt: str,
    max_new_tokens: int = 100,
    temperature: float = 0.8,
    top_k: int | None = 200,
    seed: int = 1337,
    device: str = "cpu",
) -> str:
    import tiktoken

    model, card = load_pretrained(checkpoint, device)
    encoding = tiktoken.get_encoding(card["tokenizer"])
    ids = encoding.encode(prompt, allowed_special={"<|endoftext|>"}) or [card["eot_token"]]
    generator = torch.Generator(device=device).manual_seed(seed)
    idx = torch.tensor([ids], dtype=torch.long, device=device)  # (1, T)
    out = model.generate(idx, max_new_tokens, temperature=temperature, top_k=top_k, generator=generator)
    return encoding.decode(out[0].tolist())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, help="folder with model.safetensors and config.json")
    parser.add_argument("--prompt", default="Once upon a time", help="text to continue")
    parser.add_argument("--max-new-tokens", type=int, default=100)
    parser.add_argument("--temperature", type=float, default=0.8, help="0 picks the most likely token")
    parser.add_argument("--top-k", type=int, default=200, help="sample from the k most likely tokens; 0: all")
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or mps")
    args = parser.parse_args(argv)
    if args.max_new_tokens < 0 or args.temperature < 0 or args.top_k < 0:
        parser.error("--max-new-tokens, --temperature and --top-k must be >= 0")
    try:
        text = sample(
            args.checkpoint, args.prompt, args.max_new_tokens, args.temperature, args.top_k or None, args.seed,
            args.device,
        )
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
