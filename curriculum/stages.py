"""The curriculum itself: an ordered list of stages, each with its own data, context length and epochs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, field_validator, model_validator

from curriculum.sources import CUSTOM_SCRAPE, KINDS, LOCAL_RECORDS, SOURCE_FIELDS, keys_summary, kind_named, kinds_with

# Every dataset_key other than the kinds' names (curriculum/sources.py) is a Hugging Face dataset: a hub id
# ("org/name"), a dataset folder or a `save_to_disk` folder. An option of one kind set on a stage of another kind
# is a mistake we report instead of ignoring.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


def artifact_name(name: str) -> str:
    """A stage name as Prefect artifact keys spell it: lower case, any run of other characters one '-'
    (the rule tasks/ui_artifacts.artifact_key applies to every part of a key)."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def source_kind(dataset_key: str) -> str:
    """The name of the kind a dataset_key selects (curriculum/sources.py): `hugging-face` for any key not a kind's."""
    return kind_named(dataset_key).name


class StageSource(BaseModel):
    """One source of a mixed stage (CurriculumStage.sources): any kind a stage reads, with its own options and a
    weight. Each is fetched, tokenized and sharded on its own, as a stage of its own would be."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(
        None, pattern=NAME_PATTERN, description="Label in the source's file names; default s1, s2, ... in order."
    )
    dataset_key: str = Field(min_length=1, description=f"As a stage's: {keys_summary()}.")
    weight: float = Field(gt=0, allow_inf_nan=False, description="Share of the stage's training windows, relative "
                          "to the other sources' weights.")
    n_items: PositiveInt | None = None
    text_field: str = Field("text", min_length=1)
    split: str = Field("train", min_length=1)
    revision: str | None = None
    files: list[str] | None = None
    id_field: str | None = Field(None, min_length=1)
    urls: list[str] = Field(default_factory=list)
    urls_file: str | None = None
    paths: list[str] = Field(default_factory=list)

    def options(self) -> dict[str, Any]:
        """The stage fields this source sets (name and weight are the mixture's)."""
        return self.model_dump(exclude={"name", "weight"}, exclude_unset=True)


class CurriculumStage(BaseModel):
    """One stage: which data, at which block size, for how many epochs.

    The constructor of the reference design (../shared/reference/curriculum-learning.md) works unchanged:
    `CurriculumStage(name="warmup", dataset_key="roneneldan/TinyStories", block_size=128,
    n_epochs=1, dataset_suffix="pretrain", n_items=50000)`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN, description="Stage name; used in file names and run names.")
    dataset_key: str | None = Field(
        None,
        min_length=1,
        description=f"{keys_summary()[0].upper()}{keys_summary()[1:]} (or give `sources`).",
    )
    sources: list[StageSource] | None = Field(
        None, min_length=1, description="A mixture instead of one dataset_key: sources with weights."
    )
    block_size: PositiveInt = Field(description="Context length (tokens) trained at this stage.")
    n_epochs: PositiveInt | None = Field(
        None, description="Passes over this stage's training tokens (give this or `tokens`)."
    )
    tokens: PositiveInt | None = Field(
        None, description="Training tokens of this stage instead of n_epochs: the data repeats or is cut to fit."
    )
    dataset_suffix: str = Field("pretrain", pattern=NAME_PATTERN, description="Suffix of the shard file names.")
    n_items: PositiveInt | None = Field(None, description="Take the first N documents; None takes all.")
    max_iters: PositiveInt | None = Field(
        None, description="Cap on this stage's optimizer steps (with train.max_iters, the lower cap wins)."
    )
    batch_size: PositiveInt | None = Field(
        None, description="Sequences per micro-batch of this stage, instead of train.batch_size / tokens_per_step."
    )
    lr: Literal["continue", "rewarm", "anneal"] | None = Field(
        None,
        description="At this stage's start, with train.lr_schedule 'global', 'wsd' or 'constant': 'continue' the "
        "schedule (the default), 'rewarm' (a linear warmup over train.warmup_iters back to it) or 'anneal' (decay "
        "linearly to train.min_lr over this stage).",
    )
    # Hugging Face options (text_field also local-records')
    text_field: str = Field("text", min_length=1, description="Column (Hugging Face) or record field "
                            "(local-records) that holds the document text.")
    split: str = Field("train", min_length=1, description="Dataset split to read.")
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit) to pin.")
    # local-files and local-records options
    files: list[str] | None = Field(
        None, description="Folders, files or globs: of .txt files (local-files; default: the 'files/' folder), or "
        "of .jsonl and .parquet files (local-records)."
    )
    id_field: str | None = Field(
        None, min_length=1, description="local-records: the record field that holds a document's id; default "
        "<file name>#<record number>."
    )
    # custom-scrape options
    urls: list[str] = Field(default_factory=list, description="Pages and PDFs to fetch.")
    urls_file: str | None = Field(None, description="A file of URLs, one per line, '#' comments.")
    paths: list[str] = Field(
        default_factory=list, description="Saved HTML/PDF files or folders, extracted like fetched pages."
    )

    @property
    def source_kind(self) -> str:
        return source_kind(self.dataset_key or "")

    @property
    def data_key(self) -> str:
        """The dataset_key of a stage that reads one source, as every component does."""
        if self.dataset_key is None:
            raise ValueError(f"stage {self.name!r} mixes sources: prepare each of its components() instead")
        return self.dataset_key

    @property
    def weights(self) -> list[float]:
        return [source.weight for source in self.sources] if self.sources else [1.0]

    def components(self) -> list[CurriculumStage]:
        """What data preparation runs for this stage: itself, or one stage per source of a mixture, named
        `{stage}.{source name or s1, s2, ...}`, whose files are `train_{stage}.{source}_{suffix}.bin` and
        `val_...`. A component is a plain stage, so its fetch and tokenize steps are cached on the source's
        content like any stage's: a source two stages (or two curricula) share is fetched and tokenized once."""
        if not self.sources:
            return [self]
        return [
            CurriculumStage(
                name=f"{self.name}.{source.name or f's{k}'}", block_size=self.block_size, n_epochs=self.n_epochs,
                tokens=self.tokens, dataset_suffix=self.dataset_suffix, **source.options(),
            )
            for k, source in enumerate(self.sources, 1)
        ]

    @model_validator(mode="before")
    @classmethod
    def _one_source_is_the_plain_form(cls, data: Any) -> Any:
        # A mixture of one source is the stage written without `sources`: the same stage, cache keys and files.
        if not isinstance(data, dict) or not isinstance(data.get("sources"), list) or len(data["sources"]) != 1:
            return data
        source = data["sources"][0]
        try:
            source = source if isinstance(source, StageSource) else StageSource.model_validate(source)
        except ValidationError:
            return data  # the field's own validation reports it, under stages.N.sources.0
        options = source.options()
        both = sorted(key for key in options if data.get(key) is not None)
        if both:
            raise ValueError(
                f"stage {data.get('name')!r} sets {', '.join(both)} both on the stage and on its source; "
                "with `sources`, give the source options on each source"
            )
        return {key: value for key, value in data.items() if key != "sources"} | options

    @property
    def shard_name(self) -> str:
        """`{stage}_{suffix}`, as in `train_{stage}_{suffix}.bin`."""
        return f"{self.name}_{self.dataset_suffix}"

    def shard_path(self, data_dir: str | Path, split: Literal["train", "val"]) -> Path:
        """`<data_dir>/{split}_{stage}_{suffix}.bin`, e.g. `data/train_warmup_pretrain.bin`: the shard names of
        the reference design (../shared/reference/curriculum-learning.md), kept so its data folders still work."""
        return Path(data_dir) / f"{split}_{self.shard_name}.bin"

    @model_validator(mode="after")
    def _one_length(self) -> CurriculumStage:
        if self.n_epochs is not None and self.tokens is not None:
            raise ValueError(
                f"stage {self.name!r} gives both n_epochs={self.n_epochs} and tokens={self.tokens:,}; a stage's "
                "length is one of them: n_epochs (passes over its data) or tokens (a budget; the data repeats or "
                "is cut to fit)"
            )
        if self.n_epochs is None and self.tokens is None:
            raise ValueError(
                f"stage {self.name!r} has no length: give n_epochs (passes over its data, e.g. n_epochs: 1) "
                "or tokens (a training token budget, e.g. tokens: 1000000)"
            )
        return self

    @model_validator(mode="after")
    def _one_kind_of_data(self) -> CurriculumStage:
        if self.sources is None:
            if self.dataset_key is None:
                raise ValueError(
                    f"stage {self.name!r} reads nothing: give dataset_key ({keys_summary()}) or sources (a list of "
                    "them, each with a weight)"
                )
            return self
        given = [option for option in ("dataset_key", "n_items", *SOURCE_FIELDS)
                 if getattr(self, option) != type(self).model_fields[option].get_default(call_default_factory=True)]
        if given:
            raise ValueError(
                f"stage {self.name!r} has sources, and also {', '.join(given)} of its own: with sources, each "
                "source gives its dataset_key and options"
            )
        labels = [source.name or f"s{k}" for k, source in enumerate(self.sources, 1)]
        if len(set(labels)) != len(labels):
            raise ValueError(f"stage {self.name!r} has sources named alike ({labels}); give each a distinct name")
        self.components()  # each source's options are checked as a stage's are
        return self

    @model_validator(mode="after")
    def _options_match_source(self) -> CurriculumStage:
        if self.sources is not None:
            return self
        kind = self.source_kind
        for option in SOURCE_FIELDS:
            if option in KINDS[kind].options:
                continue
            # Compared with the default, not with "was it given": a dumped and reloaded stage
            # carries every field, and a default value never configures anything.
            if getattr(self, option) != type(self).model_fields[option].get_default(call_default_factory=True):
                raise ValueError(
                    f"option {option!r} belongs to {' and '.join(kinds_with(option))} stages, but stage "
                    f"{self.name!r} has dataset_key={self.dataset_key!r}; options for this stage: "
                    f"{', '.join(KINDS[kind].options) or 'none'}"
                )
        if kind == LOCAL_RECORDS and not self.files:
            raise ValueError(
                f"stage {self.name!r} (local-records) has nothing to read: give 'files' (.jsonl or .parquet files, "
                "folders or globs) and, if the text is not in a field named 'text', 'text_field'"
            )
        if kind == CUSTOM_SCRAPE and not (self.urls or self.urls_file or self.paths):
            raise ValueError(
                f"stage {self.name!r} (custom-scrape) has nothing to read: give 'urls', 'urls_file' "
                "or 'paths' (saved HTML/PDF files)"
            )
        return self


class Curriculum(BaseModel):
    """Stages trained in order, each starting from the weights the previous one ended with."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stages: list[CurriculumStage] = Field(min_length=1, description="Stages, trained in this order.")

    @field_validator("stages")
    @classmethod
    def _unique_names(cls, stages: list[CurriculumStage]) -> list[CurriculumStage]:
        seen: set[str] = set()
        for stage in stages:
            if stage.name in seen:
                names = [s.name for s in stages]
                raise ValueError(f"duplicate stage name {stage.name!r} in {names}; stage names must be unique")
            seen.add(stage.name)
        return stages

    @field_validator("stages")
    @classmethod
    def _distinct_file_and_artifact_names(cls, stages: list[CurriculumStage]) -> list[CurriculumStage]:
        """Two stages must not share a shard file (`train_a_b_pretrain.bin` from stage `a` with suffix `b_pretrain`
        and from stage `a_b`), not even on a file system that ignores case, nor a UI artifact key."""
        shards: dict[str, CurriculumStage] = {}
        keys: dict[str, CurriculumStage] = {}
        for stage in (component for whole in stages for component in whole.components()):
            shard = stage.shard_name.casefold()
            if shard in shards:
                other = shards[shard]
                raise ValueError(
                    f"stages {other.name!r} (dataset_suffix {other.dataset_suffix!r}) and {stage.name!r} "
                    f"(dataset_suffix {stage.dataset_suffix!r}) would both write train_{stage.shard_name}.bin "
                    "(file names are compared ignoring case, as macOS and Windows do); rename one of the stages "
                    "or change its dataset_suffix"
                )
            shards[shard] = stage
            key = artifact_name(stage.name)
            if key in keys:
                raise ValueError(
                    f"stages {keys[key].name!r} and {stage.name!r} would share the UI artifacts named {key!r} "
                    "(artifact keys ignore case and turn '_' and '.' into '-'); rename one of them"
                )
            keys[key] = stage
        return stages

    def components(self) -> list[CurriculumStage]:
        """Every stage's data preparation units in order (CurriculumStage.components)."""
        return [component for stage in self.stages for component in stage.components()]

    @property
    def max_block_size(self) -> int:
        return max(stage.block_size for stage in self.stages)

    def stage(self, name: str) -> CurriculumStage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(f"no stage named {name!r}; stages: {[s.name for s in self.stages]}")
