"""The README and the pages in docs/ name only settings that exist, their YAML examples are valid run configs, the
README's links lead somewhere, and the site builds with `mkdocs build --strict` (which fails on a broken link or
anchor, and on a page missing from mkdocs.yml's nav)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from markdown.extensions.toc import slugify
from pydantic import BaseModel

from curriculum.config import RunConfig, validate_run_config
from curriculum.stages import CurriculumStage

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

# A dotted key as the docs write one: `train.max_iters`, `stages.warmup.n_items`, `stages.<stage name>.<field>`.
PART = r"(?:[A-Za-z_][\w-]*|<[^<>`\n]*>|\d+)"
KEY = rf"{PART}(?:\.{PART})*"
SET_FLAG = re.compile(rf"--set\s+[\"']?({KEY})=")  # --set train.max_iters=20, --set "stages.x.paths=[...]"
OVERRIDE_KEY = re.compile(rf"\"({KEY})\"\s*:")  # overrides='{"train.max_iters": 20}'
CODE_SPAN = re.compile(r"`([^`]+)`")
FENCED = re.compile(r"^```[^\n]*\n.*?^```", re.S | re.M)
FILE_SUFFIXES = {".py", ".json", ".jsonl", ".safetensors", ".bin", ".yaml", ".md", ".png", ".txt"}


def section_models() -> dict[str, type[BaseModel]]:
    sections: dict[str, type[BaseModel]] = {"stages": CurriculumStage}
    for name, field in RunConfig.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            sections[name] = field.annotation
    return sections


SECTIONS = section_models()


def placeholder(part: str) -> bool:
    return part.startswith("<") or part.isupper()  # <stage>, <field>, SECTION, KEY


def problem_with(key: str) -> str | None:
    """Why `key` (as after `--set`) names no setting, or None when it does or is a pattern such as SECTION.KEY."""
    parts = key.split(".")
    section = parts[0]
    if placeholder(section):
        return None
    if section not in SECTIONS:
        if len(parts) == 1 and section in RunConfig.model_fields:
            return None  # a top-level field: --set name=...
        return f"no section {section!r}; sections: {', '.join(SECTIONS)}"
    model = SECTIONS[section]
    # A stage's field comes after the stage's name or position: stages.<stage>.<field>.
    field_at = 2 if section == "stages" else 1
    if len(parts) <= field_at or placeholder(parts[field_at]):
        return None
    if parts[field_at] not in model.model_fields:
        return f"{model.__name__} has no field {parts[field_at]!r}; fields: {', '.join(model.model_fields)}"
    return None


def is_path_or_module(key: str) -> bool:
    """`model.safetensors`, `train.py`, `model.sample`: a file or a module of the project, not a setting."""
    return Path(key).suffix in FILE_SUFFIXES or (ROOT / key.replace(".", "/")).with_suffix(".py").exists()


def setting_mentions(text: str) -> list[tuple[int, str]]:
    """(line, key) for every `--set KEY=`, every `"KEY":` of an overrides object, and every code span that starts
    with a section's name and a dot (`train.lr_schedule`, `model.block_size` = ...), outside code blocks too."""
    found = [(match.start(), match.group(1)) for pattern in (SET_FLAG, OVERRIDE_KEY)
             for match in pattern.finditer(text)]
    prose = FENCED.sub(lambda block: "\n" * block.group(0).count("\n"), text)
    for span in CODE_SPAN.finditer(prose):
        head = re.match(rf"({'|'.join(SECTIONS)})\.{KEY}", span.group(1))
        if head and not is_path_or_module(head.group(0)):
            found.append((span.start(), head.group(0)))
    return sorted((text.count("\n", 0, at) + 1, key) for at, key in found)


def test_the_scan_finds_the_forms_the_docs_use():
    text = (
        'run `--set "stages.pretrain.paths=[a]"` and --set train.max_iters=20, then\n'
        "`train.lr_schedule` or `model.block_size` = 2, not `model.safetensors` or `python -m model.sample`\n"
        "```bash\nprefect deployment run x --param overrides='{\"train.nproc\": 2}'\n```\n"
    )
    assert sorted(key for _, key in setting_mentions(text)) == [
        "model.block_size", "stages.pretrain.paths", "train.lr_schedule", "train.max_iters", "train.nproc",
    ]
    assert problem_with("train.max_iter") and "max_iters" in str(problem_with("train.max_iter"))
    assert problem_with("trian.max_iters") and problem_with("stages.warmup.n_item")
    assert not problem_with("stages.<stage>.<field>") and not problem_with("SECTION.KEY") and not problem_with("name")


def test_every_setting_the_docs_name_exists():
    mentions = {page: setting_mentions(page.read_text(encoding="utf-8")) for page in PAGES}
    assert sum(map(len, mentions.values())) > 50, "the scan found almost no settings: is it still reading the pages?"
    wrong = [
        f"{page.relative_to(ROOT)}:{line}: {key}: {problem}"
        for page, found in mentions.items() for line, key in found
        if (problem := problem_with(key)) is not None
    ]
    assert not wrong, "settings named in the docs that the config models do not have:\n" + "\n".join(wrong)


def yaml_examples() -> list[tuple[str, str]]:
    return [
        (f"{page.relative_to(ROOT)}:{page.read_text(encoding='utf-8').count(chr(10), 0, match.start()) + 2}",
         match.group(1))
        for page in PAGES
        for match in re.finditer(r"^```yaml\n(.*?)^```", page.read_text(encoding="utf-8"), re.S | re.M)
    ]


@pytest.mark.parametrize(("where", "example"), yaml_examples(), ids=[where for where, _ in yaml_examples()])
def test_every_yaml_example_is_a_valid_run_config(where: str, example: str):
    raw = yaml.safe_load(example)
    assert isinstance(raw, dict) and set(raw) <= set(RunConfig.model_fields), f"{where}: not a run config: {raw}"
    validate_run_config({"name": "example", **raw}, source=where)


def test_the_readmes_links_lead_to_pages_and_headings_that_exist():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)\s]+)\)", readme)
    local = [link for link in links if not re.match(r"[a-z]+:", link)]
    assert any(link.startswith("docs/") for link in local), "the README links into docs/"
    for link in local:
        target, _, anchor = link.partition("#")
        path = ROOT / target
        assert path.exists(), f"README links to {link}, which does not exist"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", FENCED.sub("", path.read_text(encoding="utf-8")), re.M)
            slugs = {slugify(heading.replace("`", ""), "-") for heading in headings}
            assert anchor in slugs, f"README links to {link}: {target} has no heading #{anchor}"


def test_the_site_builds_strictly(tmp_path: Path):
    assert importlib.util.find_spec("mkdocs"), 'mkdocs is missing: pip install -c requirements-lock.txt -e ".[docs]"'
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert built.returncode == 0, f"mkdocs build --strict failed:\n{built.stdout}{built.stderr}"
    assert (tmp_path / "site" / "reference" / "settings" / "index.html").is_file()
