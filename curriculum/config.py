"""A whole run: the curriculum plus the settings of each part, loaded from a preset or YAML and `--set`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from curriculum.prepare_config import PrepareConfig
from curriculum.preset_sections import PRESET_SECTIONS
from curriculum.stages import NAME_PATTERN, Curriculum
from curriculum.training.config import TrainConfig
from curriculum.training.schedule import check_batch_sizes, check_lr_transitions
from data.config import DataConfig
from data.errors import UserError
from data.web.config import ScrapeConfig
from model.config import ModelConfig


class ConfigError(UserError, ValueError):
    """A run configuration a user wrote (YAML, --type, --set) is wrong; the message says where and how."""


class RunConfig(Curriculum):
    """`stages:` plus one section per part; each part receives only its own section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("custom", pattern=NAME_PATTERN, description="Run name: the preset or YAML file name.")
    data: DataConfig = Field(default_factory=DataConfig)
    scrape: ScrapeConfig = Field(default_factory=ScrapeConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    prepare: PrepareConfig = Field(default_factory=PrepareConfig)

    @model_validator(mode="after")
    def _default_folders(self) -> RunConfig:
        # Defaults that depend on the run's name, filled in once so every part receives a concrete path.
        # Writing to __dict__ keeps them "unset": a dumped-and-reloaded config resolves them the same way.
        if self.data.data_dir is None:
            self.__dict__["data"] = self.data.model_copy(update={"data_dir": Path("out/data") / self.name})
        if self.train.out_dir is None:
            self.__dict__["train"] = self.train.model_copy(update={"out_dir": Path("out/runs") / self.name})
        return self

    @model_validator(mode="after")
    def _stages_fit_training(self) -> RunConfig:
        # Settings that join a stage with the train section: each stage's batch size (tokens_per_step) and
        # its lr transition (which needs a schedule over the whole curriculum).
        check_batch_sizes(self, self.train)
        check_lr_transitions(self, self.train)
        return self

    @property
    def curriculum(self) -> Curriculum:
        return Curriculum(stages=self.stages)

    @property
    def data_dir(self) -> Path:
        return self.data.resolved_data_dir

    @property
    def out_dir(self) -> Path:
        # _default_folders fills it in, so only a config built without validation (model_construct) lacks it.
        if self.train.out_dir is None:
            raise ValueError("train.out_dir is not set: build the RunConfig with validation so it gets its default")
        return self.train.out_dir


def load_run_config(
    type: str | None = None,
    config_path: str | Path | None = None,
    overrides: Iterable[str] | Mapping[str, Any] = (),
) -> RunConfig:
    """The run config from a preset name (`type`) or a YAML file, with dotted overrides applied.

    Overrides are `section.key=value` strings (the CLI's `--set`) or a mapping of dotted keys
    to values (deployment parameters). `stages.<name>.<field>` addresses one stage by name.
    """
    if config_path is not None:
        raw = _read_yaml(Path(config_path))
        raw.setdefault("name", Path(config_path).stem)
    else:
        type = type or "simple"
        if type not in PRESET_SECTIONS:
            raise ConfigError(
                f"unknown curriculum type {type!r}; choose one of: {', '.join(PRESET_SECTIONS)} "
                "(or give a YAML file with --config)"
            )
        raw = PRESET_SECTIONS[type]()  # the same raw sections a YAML file gives; validated once, below
    if isinstance(overrides, Mapping):
        pairs = list(overrides.items())
    else:
        pairs = [parse_override(text) for text in overrides]
    for key, value in pairs:
        _apply_override(raw, key, value)
    return validate_run_config(raw, source=str(config_path) if config_path else f"--type {type}")


def validate_run_config(raw: Any, source: str = "config") -> RunConfig:
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(f"invalid run configuration ({source}):\n{describe_errors(error, RunConfig)}") from None


def describe_errors(error: ValidationError, root: type[BaseModel]) -> str:
    """One line per problem: the field path, what is wrong, the value given and what is allowed."""
    lines = []
    for item in error.errors():
        loc = [str(part) for part in item["loc"]]
        path = ".".join(loc) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            allowed = _allowed_keys(root, item["loc"][:-1])
            message = f"unknown key {loc[-1]!r}; allowed keys here: {', '.join(allowed)}"
        elif "input" in item and item["type"] not in ("missing", "value_error"):
            message += f" (got {item['input']!r})"
        lines.append(f"  - {path}: {message}")
    return "\n".join(lines)


def _allowed_keys(root: type[BaseModel], loc: tuple) -> list[str]:
    model: Any = root
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return []
        model = _model_in(field.annotation)
        if model is None:
            return []
    return list(model.model_fields)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds, also inside `X | None` and `list[X]`."""
    for arg in getattr(annotation, "__args__", ()) or (annotation,):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
        if getattr(arg, "__args__", None):
            nested = _model_in(arg)
            if nested is not None:
                return nested
    return None


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}; give an existing YAML file to --config")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(raw, dict) or "stages" not in raw:
        raise ConfigError(
            f"{path} must be a YAML mapping with a 'stages:' list (and optional data, scrape, model, "
            "train, prepare sections); see docs/stages.md, 'Config files'"
        )
    return raw


def parse_override(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects section.key=value, got {text!r}; example: --set model.n_layer=2")
    return key.strip(), parse_value(value.strip())


def parse_value(text: str) -> Any:
    """YAML scalars and lists (`2`, `true`, `null`, `[a, b]`); numbers like `1e-3` too."""
    try:
        value = yaml.safe_load(text) if text else ""
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _apply_override(raw: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    sections = ["stages", *(name for name in RunConfig.model_fields if name != "stages")]
    if parts[0] not in sections:
        raise ConfigError(f"--set {key}: unknown section {parts[0]!r}; sections: {', '.join(sections)}")
    if parts[0] == "stages":
        if len(parts) != 3:
            raise ConfigError(f"--set {key}: address a stage field as stages.<stage name>.<field>")
        stages = raw.setdefault("stages", [])
        names = [stage.get("name") for stage in stages]
        if parts[1] in names:
            target = stages[names.index(parts[1])]
        elif parts[1].isdigit() and int(parts[1]) < len(stages):
            target = stages[int(parts[1])]
        else:
            raise ConfigError(f"--set {key}: no stage named {parts[1]!r}; stages: {', '.join(map(str, names))}")
        target[parts[2]] = value
        return
    target = raw
    for part in parts[:-1]:
        node = target.get(part)
        if node is None:
            node = target[part] = {}
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: {part!r} is a value, not a section")
        target = node
    target[parts[-1]] = value
