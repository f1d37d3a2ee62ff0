"""`python -m model.export`: transformers loads the folder with its built-in GPT-NeoX and GPT-2 tokenizer, and both
compute what the project's model and tiktoken compute, on real text from ../shared."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import tiktoken
import torch
import transformers  # the hf extra (pip install -e ".[hf]"), which the README's set-up and .ci/run install

from model.config import ModelConfig
from model.export import export
from model.gpt import GPT
from model.pretrained import CONFIG_FILE, WEIGHTS_FILE, model_card, save_weights
from model.sample import sample
from tests.support.prefect_server import ROOT

VOCAB, EOT = 50257, 50256


def book_tokens(shared) -> list[int]:
    text = (shared / "corpora" / "books" / "carroll_alice-in-wonderland_pg11.txt").read_text(encoding="utf-8")
    return tiktoken.get_encoding("r50k_base").encode_ordinary(text)


def trained_checkpoint(folder, tokens: list[int], bias: bool):
    """A tiny model after a few AdamW steps on the book (so no weight is at its initial value), saved as every
    checkpoint folder is: model.safetensors + config.json."""
    torch.manual_seed(0)
    config = ModelConfig(preset="tiny", block_size=64, bias=bias)
    model = GPT(config, VOCAB)
    optimizer = model.configure_optimizer(0.0, 3e-3, (0.9, 0.95), "cpu")
    data = torch.tensor(tokens[: 8 * 65 * 6]).view(6, 8, 65)
    for batch in data:
        _, loss = model(batch[:, :-1], batch[:, 1:], return_logits=False)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    folder.mkdir()
    save_weights(model, folder / WEIGHTS_FILE)
    (folder / CONFIG_FILE).write_text(json.dumps(model_card(config, VOCAB, "r50k_base", EOT)), encoding="utf-8")
    return model.eval()


@pytest.fixture(scope="module")
def tokens(shared):
    return book_tokens(shared)


@pytest.mark.parametrize("bias", [False, True])
def test_exported_logits_and_greedy_tokens_match_the_projects_model(tmp_path, tokens, bias):
    ours = trained_checkpoint(tmp_path / "ckpt", tokens, bias)
    out = export(tmp_path / "ckpt", tmp_path / "hf")
    hf = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    assert type(hf).__name__ == "GPTNeoXForCausalLM"
    x = torch.tensor([tokens[5000:5064], tokens[9000:9064]])
    with torch.no_grad():
        mine, _ = ours(x, x)
        theirs = hf(x).logits[..., :VOCAB]
    assert (mine - theirs).abs().max().item() < 1e-4
    prompt = "Alice was beginning to get very tired"
    want = sample(str(tmp_path / "ckpt"), prompt, max_new_tokens=12, temperature=1.0, top_k=1)
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    got = hf.generate(ids, max_new_tokens=12, do_sample=False, pad_token_id=EOT)
    assert tokenizer.decode(got[0]) == want


def test_the_exported_tokenizer_gives_tiktokens_ids_on_every_book(tmp_path, tokens, shared):
    trained_checkpoint(tmp_path / "ckpt", tokens, bias=False)
    tokenizer = transformers.AutoTokenizer.from_pretrained(export(tmp_path / "ckpt", tmp_path / "hf"))
    encoding = tiktoken.get_encoding("r50k_base")
    books = sorted((shared / "corpora" / "books").glob("*.txt"))
    assert len(books) >= 10
    for book in books:
        text = book.read_text(encoding="utf-8", errors="replace")
        assert tokenizer(text)["input_ids"] == encoding.encode_ordinary(text), book.name
    assert tokenizer.decode(encoding.encode_ordinary("café — naïve\n\n  it's")) == "café — naïve\n\n  it's"


def test_the_command_refuses_an_existing_folder_and_names_it(tmp_path, tokens):
    trained_checkpoint(tmp_path / "ckpt", tokens, bias=False)
    (tmp_path / "hf").mkdir()
    run = subprocess.run([sys.executable, "-m", "model.export", "--checkpoint", str(tmp_path / "ckpt"), "--out",
                          str(tmp_path / "hf")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1 and f"--out {tmp_path / 'hf'} exists" in run.stderr
