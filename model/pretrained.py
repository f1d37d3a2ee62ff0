"""A folder that holds a trained model: `model.safetensors` + `config.json` (model shape and tokenizer).

Every checkpoint folder and the run's `final/` folder have this layout, so any of them can be sampled from
or evaluated without knowing how training stores the rest of its state.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model

from model.config import ModelConfig
from model.gpt import GPT

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def model_card(
    config: ModelConfig, vocab_size: int, tokenizer: str | None, eot_token: int | None, **extra: Any
) -> dict:
    """The content of config.json."""
    return {
        "model": config.model_dump(mode="json"),
        "vocab_size": vocab_size,
        "tokenizer": tokenizer,
        "eot_token": eot_token,
        **extra,
    }


def save_weights(model: GPT, path: Path) -> None:
    # save_model (not save_file) because the embedding and the output head share one tensor.
    save_model(model, str(path))


def load_weights(model: GPT, path: Path) -> None:
    # safetensors holds raw tensors only: loading cannot run code, unlike a pickled torch.save file.
    missing, unexpected = load_model(model, path, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{path} does not fit this model: missing {missing[:5]}, unexpected {unexpected[:5]}; "
            "was it written for another model shape? Check config.json beside it"
        )


def load_pretrained(folder: str | Path, device: str | torch.device = "cpu") -> tuple[GPT, dict]:
    """The model in `folder` (in eval mode) and its config.json."""
    folder = Path(folder)
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found; give a folder holding {WEIGHTS_FILE} and {CONFIG_FILE}, e.g. a run's "
                "final/ folder (out/runs/<type>/final) or one of its checkpoints/<stage>/end folders"
            )
    card = json.loads(config_path.read_text(encoding="utf-8"))
    model = GPT(ModelConfig.model_validate(card["model"]), vocab_size=int(card["vocab_size"]))
    load_weights(model, weights_path)
    return model.to(device).eval(), card
