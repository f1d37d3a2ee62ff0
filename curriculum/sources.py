"""Every kind of data source a stage can read, in one table (KINDS): its name, reader, options and paths.

Everything that depends on the kind reads this table: a stage's and a mixed stage's source validation
(curriculum/stages.py: which options belong to which kind), the reader the fetch step builds (make_reader), the fetch
step's cache key and code identity (tasks/prepare.py), the run fingerprint's location fields
(curriculum/training/run_dir.py) and the paths a served run is confined to (curriculum/allowed_paths.py).

Adding a kind: a reader in data/ (a `Source`: fingerprint() and documents(report)), and one SourceKind below with
its options; an option no kind had before is also a field of CurriculumStage and StageSource (curriculum/stages.py),
documented there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the readers import their libraries only when a stage of their kind is read
    from data.config import DataConfig
    from data.documents import Source
    from data.web.config import ScrapeConfig

HUGGING_FACE = "hugging-face"
LOCAL_FILES = "local-files"
LOCAL_RECORDS = "local-records"
CUSTOM_SCRAPE = "custom-scrape"


@dataclass(frozen=True)
class SourceKind:
    name: str  # the dataset_key that selects it (hugging-face: any other dataset_key)
    summary: str
    options: tuple[str, ...]  # stage (and mixed-stage source) fields of this kind; others are refused
    paths: tuple[str, ...]  # options that name files, folders or globs on this machine (a served run's confinement)
    content: tuple[str, ...]  # options that change which documents are read: the fetch step's cache key
    reader: Callable[[Any, DataConfig, ScrapeConfig], Source]  # (stage, data settings, scrape settings) -> Source
    code: tuple[str, ...]  # modules of the reader: the fetch step's code identity (none: never cached)
    key_is_path: bool = False  # the dataset_key itself may name a folder here


def _hugging_face(stage: Any, data_cfg: DataConfig, scrape_cfg: ScrapeConfig) -> Source:
    from data.hf_reader import HuggingFaceReader

    return HuggingFaceReader(stage.data_key, split=stage.split, text_field=stage.text_field, revision=stage.revision,
                             n_items=stage.n_items, mirror=data_cfg.hub_mirror)


def _local_files(stage: Any, data_cfg: DataConfig, scrape_cfg: ScrapeConfig) -> Source:
    from data.text_files import TextFilesReader

    return TextFilesReader(stage.files, stage=stage.name)


def _local_records(stage: Any, data_cfg: DataConfig, scrape_cfg: ScrapeConfig) -> Source:
    from data.records import RecordsReader

    return RecordsReader(stage.files, text_field=stage.text_field, id_field=stage.id_field, stage=stage.name,
                         exclude=(data_cfg.resolved_data_dir,))


def _custom_scrape(stage: Any, data_cfg: DataConfig, scrape_cfg: ScrapeConfig) -> Source:
    from data.web.source import WebReader

    return WebReader(urls=stage.urls, urls_file=stage.urls_file, paths=stage.paths, config=scrape_cfg,
                     cache_dir=data_cfg.resolved_data_dir / "web-cache",
                     report_path=data_cfg.resolved_data_dir / "reports" / f"crawl_{stage.name}.json")


KINDS: dict[str, SourceKind] = {kind.name: kind for kind in (
    SourceKind(HUGGING_FACE, "a Hugging Face dataset: a hub id, a dataset folder or a save_to_disk folder",
               options=("text_field", "split", "revision"), paths=(), content=("n_items", "split", "text_field",
                                                                                "revision"),
               reader=_hugging_face, code=("data.hf_reader", "data.hf_datasets"), key_is_path=True),
    SourceKind(LOCAL_FILES, ".txt files from folders, files or globs", options=("files",), paths=("files",),
               content=("n_items",), reader=_local_files,
               code=("data.text_files", "data.local_files", "data.text_cleanup", "data.extract.charset")),
    SourceKind(LOCAL_RECORDS, "JSON Lines and Parquet files, one document per record",
               options=("files", "text_field", "id_field"), paths=("files",),
               content=("n_items", "text_field", "id_field"), reader=_local_records,
               code=("data.records", "data.local_files", "data.text_cleanup")),
    SourceKind(CUSTOM_SCRAPE, "web pages and PDFs, fetched from URLs or saved", options=("urls", "urls_file", "paths"),
               paths=("urls_file", "paths"), content=(), reader=_custom_scrape, code=()),
)}

# Every option of every kind, and every path option, each once, in table order.
SOURCE_FIELDS = tuple(dict.fromkeys(option for kind in KINDS.values() for option in kind.options))
LOCATION_FIELDS = tuple(dict.fromkeys(option for kind in KINDS.values() for option in kind.paths))
# The readers of every kind: part of the fetch step's code identity (tasks/prepare.py FETCH_CODE).
READER_CODE = tuple(dict.fromkeys(module for kind in KINDS.values() for module in kind.code))


def kind_named(dataset_key: str) -> SourceKind:
    """The kind a dataset_key selects: a kind's name, or else a Hugging Face dataset."""
    return KINDS.get(dataset_key, KINDS[HUGGING_FACE])


def kinds_with(option: str) -> list[str]:
    return [kind.name for kind in KINDS.values() if option in kind.options]


def keys_summary() -> str:
    """'a Hugging Face id or folder, 'local-files', 'local-records' or 'custom-scrape'' for messages."""
    named = [f"'{name}'" for name in KINDS if name != HUGGING_FACE]
    return "a Hugging Face id or folder, " + ", ".join(named[:-1]) + f" or {named[-1]}"
