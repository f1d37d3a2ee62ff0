"""The built-in curricula, `--type simple` and `--type default`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from curriculum.config import RunConfig
from curriculum.sources import CUSTOM_SCRAPE, LOCAL_FILES
from curriculum.stages import CurriculumStage

# Freely licensed long-form pages and PDFs; users edit this list (or point urls_file elsewhere).
DEFAULT_URLS_FILE = Path(__file__).with_name("default_urls.txt")


def _warmup(n_items: int) -> CurriculumStage:
    return CurriculumStage(
        name="warmup",
        dataset_key="roneneldan/TinyStories",
        block_size=128,
        n_epochs=1,
        dataset_suffix="pretrain",
        n_items=n_items,
    )


def _pretrain(block_size: int, n_epochs: int) -> CurriculumStage:
    return CurriculumStage(
        name="pretrain",
        dataset_key=CUSTOM_SCRAPE,
        block_size=block_size,
        n_epochs=n_epochs,
        dataset_suffix="pretrain",
        urls_file=str(DEFAULT_URLS_FILE),
    )


def simple() -> RunConfig:
    """Warmup on 10k TinyStories (block 128, 1 epoch), then web pages and PDFs (block 256, 2 epochs)."""
    return RunConfig(name="simple", stages=[_warmup(10_000), _pretrain(256, 2)])


def default() -> RunConfig:
    """Warmup on 50k TinyStories (128, 1 epoch), local .txt files (256, 2), web text (512, 3)."""
    foundation = CurriculumStage(
        name="foundation",
        dataset_key=LOCAL_FILES,
        block_size=256,
        n_epochs=2,
        dataset_suffix="pretrain",
    )
    return RunConfig(name="default", stages=[_warmup(50_000), foundation, _pretrain(512, 3)])


PRESETS: dict[str, Callable[[], RunConfig]] = {"simple": simple, "default": default}
