"""The built-in curricula as raw config sections, the same shape a YAML file has: `load_run_config` applies the
overrides to them and validates once, as it does a file (curriculum/presets.py builds the RunConfig of each)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from curriculum.sources import CUSTOM_SCRAPE, LOCAL_FILES

# Freely licensed long-form pages and PDFs; users edit this list (or point urls_file elsewhere).
DEFAULT_URLS_FILE = Path(__file__).with_name("default_urls.txt")


def _warmup(n_items: int) -> dict[str, Any]:
    return {"name": "warmup", "dataset_key": "roneneldan/TinyStories", "block_size": 128, "n_epochs": 1,
            "dataset_suffix": "pretrain", "n_items": n_items}


def _pretrain(block_size: int, n_epochs: int) -> dict[str, Any]:
    return {"name": "pretrain", "dataset_key": CUSTOM_SCRAPE, "block_size": block_size, "n_epochs": n_epochs,
            "dataset_suffix": "pretrain", "urls_file": str(DEFAULT_URLS_FILE)}


def simple() -> dict[str, Any]:
    """Warmup on 10k TinyStories (block 128, 1 epoch), then web pages and PDFs (block 256, 2 epochs)."""
    return {"name": "simple", "stages": [_warmup(10_000), _pretrain(256, 2)]}


def default() -> dict[str, Any]:
    """Warmup on 50k TinyStories (128, 1 epoch), local .txt files (256, 2), web text (512, 3)."""
    foundation = {"name": "foundation", "dataset_key": LOCAL_FILES, "block_size": 256, "n_epochs": 2,
                  "dataset_suffix": "pretrain"}
    return {"name": "default", "stages": [_warmup(50_000), foundation, _pretrain(512, 3)]}


PRESET_SECTIONS: dict[str, Callable[[], dict[str, Any]]] = {"simple": simple, "default": default}
