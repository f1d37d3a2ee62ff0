"""The settings reference (docs/reference/settings.md) says what the run config's models say, field by field, and
the committed page is the one the models render today."""

from __future__ import annotations

import difflib
import html
import re

import pytest
from pydantic import BaseModel

from curriculum.config import RunConfig
from curriculum.settings_reference import COMMAND, PAGE, render
from curriculum.stages import CurriculumStage, StageSource


def sections() -> dict[str, type[BaseModel]]:
    """Heading name -> model: every section of a run, a stage and a mixed stage's source."""
    found: dict[str, type[BaseModel]] = {"stages": CurriculumStage, "sources": StageSource}
    for name, field in RunConfig.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            found[name] = field.annotation
    return found


def rows_by_section(page: str) -> dict[str, dict[str, str]]:
    """Heading name -> {field name: its row in the section's table of fields}."""
    result: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    in_fields = False
    for line in page.splitlines():
        heading = re.fullmatch(r"#{2,3} `([a-z0-9_]+)`", line)
        if heading:
            current = result.setdefault(heading.group(1), {})
        if line == "| field | type | default | description |":
            in_fields = True
        elif not line.startswith("|"):
            in_fields = False
        row = re.match(r"\| `([a-z0-9_]+)` \|", line)
        if in_fields and row and current is not None:
            current[row.group(1)] = line
    return result


def test_the_committed_page_is_current():
    committed = PAGE.read_text(encoding="utf-8")
    fresh = render()
    diff = "".join(difflib.unified_diff(
        committed.splitlines(keepends=True), fresh.splitlines(keepends=True), "committed", "rendered now", n=0
    ))
    assert committed == fresh, f"{PAGE.name} differs from the models; regenerate it with `{COMMAND}`:\n{diff[:4000]}"


def test_every_field_of_every_section_has_a_row_with_its_type_default_and_description():
    rows = rows_by_section(render())
    assert set(rows) == set(sections()), "one heading per section, stage and source"
    for section, model in sections().items():
        assert set(rows[section]) == set(model.model_fields), f"section {section}: one row per field"
        for name, field in model.model_fields.items():
            cells = [cell.strip() for cell in rows[section][name].strip("|").split(" | ")]
            assert len(cells) == 4, f"{section}.{name}: field, type, default, description: {cells}"
            assert cells[1], f"{section}.{name}: no type shown"
            assert (cells[2] == "required") == field.is_required(), f"{section}.{name}: default {cells[2]!r}"
            description = field.description
            if description is None:  # a source's option: the stage option's description
                assert model is StageSource, f"{section}.{name} has no description of its own"
                description = CurriculumStage.model_fields[name].description
                assert cells[3].startswith(f"As a stage's `{name}`: ")
            words = re.sub(r"[^a-z0-9]+", " ", (description or "").lower()).split()
            shown = re.sub(r"[^a-z0-9]+", " ", html.unescape(cells[3]).lower())
            assert words and " ".join(words) in shown, (
                f"{section}.{name}: the row does not carry the field's description"
            )


def test_the_defaults_shown_are_the_models_defaults():
    rows = rows_by_section(render())
    assert "| `6e-05` |" in rows["train"]["min_lr"]
    assert "| `per-stage` |" in rows["train"]["lr_schedule"]
    assert "| `false` |" in rows["scrape"]["allow_private"]
    assert "| `[]` |" in rows["stages"]["urls"]
    assert "| required |" in rows["stages"]["block_size"]
    assert "| `null` |" in rows["data"]["data_dir"]
    assert "`per-stage`, `global`, `wsd` or `constant`" in rows["train"]["lr_schedule"]
    assert "int (> 0) or `auto`" in rows["train"]["nproc"]


def test_a_field_without_a_description_stops_the_page_naming_it_and_the_fix(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(CurriculumStage.model_fields["block_size"], "description", None)
    with pytest.raises(ValueError, match=r"CurriculumStage\.block_size has no description.*curriculum/stages\.py"):
        render()
