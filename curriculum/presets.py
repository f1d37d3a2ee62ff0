"""The built-in curricula, `--type simple` and `--type default`, as RunConfigs (their sections:
curriculum/preset_sections.py, which `load_run_config` reads)."""

from __future__ import annotations

from collections.abc import Callable

from curriculum import preset_sections
from curriculum.config import RunConfig
from curriculum.preset_sections import DEFAULT_URLS_FILE

__all__ = ["DEFAULT_URLS_FILE", "PRESETS", "default", "simple"]


def simple() -> RunConfig:
    """Warmup on 10k TinyStories (block 128, 1 epoch), then web pages and PDFs (block 256, 2 epochs)."""
    return RunConfig.model_validate(preset_sections.simple())


def default() -> RunConfig:
    """Warmup on 50k TinyStories (128, 1 epoch), local .txt files (256, 2), web text (512, 3)."""
    return RunConfig.model_validate(preset_sections.default())


PRESETS: dict[str, Callable[[], RunConfig]] = {"simple": simple, "default": default}
