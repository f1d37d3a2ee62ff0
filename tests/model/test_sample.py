"""`python -m model.sample` prints text from a pretrained folder (model.safetensors + config.json)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model.config import ModelConfig
from model.gpt import GPT
from model.pretrained import CONFIG_FILE, WEIGHTS_FILE, load_pretrained, model_card, save_weights

ROOT = Path(__file__).resolve().parents[2]


def _folder(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    config = ModelConfig(preset="tiny", block_size=32)
    model = GPT(config, 50257)
    save_weights(model, tmp_path / WEIGHTS_FILE)
    card = model_card(config, 50257, "r50k_base", 50256)
    (tmp_path / CONFIG_FILE).write_text(json.dumps(card))
    return tmp_path


def test_pretrained_folder_round_trips(tmp_path):
    folder = _folder(tmp_path)
    model, card = load_pretrained(folder)
    torch.manual_seed(0)
    original = GPT(ModelConfig(preset="tiny", block_size=32), 50257)
    for (name, a), (_, b) in zip(original.state_dict().items(), model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert card["tokenizer"] == "r50k_base" and not model.training


@pytest.mark.slow  # a Python process that imports torch, twice
def test_sample_cli_prints_the_prompt_and_a_continuation(tmp_path):
    folder = _folder(tmp_path)
    cmd = [sys.executable, "-m", "model.sample", "--checkpoint", str(folder), "--prompt", "Once upon a time",
           "--max-new-tokens", "8", "--seed", "3"]
    first = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("Once upon a time") and len(first.stdout) > len("Once upon a time\n")
    second = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert second.stdout == first.stdout  # seeded


@pytest.mark.slow  # a Python process that imports torch
def test_sample_cli_names_a_missing_folder(tmp_path):
    cmd = [sys.executable, "-m", "model.sample", "--checkpoint", str(tmp_path / "nope")]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "nope/config.json not found" in proc.stderr and "final/" in proc.stderr
