"""GPT-2's BPE for Hugging Face, built offline from the tiktoken ranks the data was tokenized with.

A tiktoken encoding holds ranks only (token bytes -> id); Hugging Face's byte-level BPE wants the vocabulary
spelled in GPT-2's printable stand-ins for bytes and the merges in order. Each merge is recovered from its
token: running BPE over the token's bytes with only the ranks below its own leaves exactly two parts, the pair
whose merge made it. The pre-tokenizing pattern of `r50k_base` is GPT-2's, which transformers' GPT2Tokenizer applies.
"""

from __future__ import annotations

import tiktoken


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map of the 256 byte values to printable characters (printable Latin-1 to themselves, the rest to
    code points from 256 up, in order)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {b: chr(b) for b in keep}, 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


def _two_parts(ranks: dict[bytes, int], token: bytes) -> tuple[bytes, bytes]:
    """The pair of tokens whose merge is `token`: BPE over its bytes with the ranks below its own."""
    limit = ranks[token]
    parts = [bytes([b]) for b in token]
    while len(parts) > 2:
        best = min(((ranks.get(a + b, limit), i) for i, (a, b) in enumerate(zip(parts, parts[1:], strict=False))))
        if best[0] >= limit:
            break
        i = best[1]
        parts[i : i + 2] = [parts[i] + parts[i + 1]]
    if len(parts) != 2:
        raise ValueError(f"token {token!r} (rank {limit}) is not the merge of two lower-ranked tokens")
    return parts[0], parts[1]


def gpt2_vocab_and_merges(encoding_name: str) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The vocabulary (spelled token -> id, special tokens included) and the merges ((a, b), in rank order) of
    `encoding_name`, a GPT-2-style tiktoken encoding, as transformers' GPT2Tokenizer takes them."""
    encoding = tiktoken.get_encoding(encoding_name)
    ranks: dict[bytes, int] = encoding._mergeable_ranks  # tiktoken's table of token bytes -> id
    spell = bytes_to_unicode()

    def spelled(token: bytes) -> str:
        return "".join(spell[b] for b in token)

    vocab = {spelled(token): rank for token, rank in ranks.items()}
    vocab.update(encoding._special_tokens)  # <|endoftext|> -> 50256
    merges = [(spelled(a), spelled(b)) for a, b in (_two_parts(ranks, token)
              for token, _ in sorted(ranks.items(), key=lambda item: item[1]) if len(token) > 1)]
    return vocab, merges
