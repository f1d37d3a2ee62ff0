"""The YAML run configs the served-run tests start: tiny enough to prepare or train in seconds on a CPU."""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.prefect_server import ROOT

# One stage of 300 TinyStories stories: the prepare-only runs.
TINY_CONFIG = """\
stages:
  - name: warmup
    dataset_key: roneneldan/TinyStories
    block_size: 64
    n_epochs: 1
    n_items: 300
data:
  data_dir: {data_dir}
"""

# A three-stage curriculum small enough to train in seconds on a CPU: the training runs of the served flow.
TRAIN_CONFIG = """\
stages:
  - name: warmup
    dataset_key: roneneldan/TinyStories
    block_size: 32
    n_epochs: 1
    n_items: 200
  - name: books
    dataset_key: local-files
    files: [{book}]
    block_size: 64
    n_epochs: 1
  - name: web
    dataset_key: custom-scrape
    paths: [{web}]
    block_size: 64
    n_epochs: 1
data:
  data_dir: {data_dir}
model:
  preset: tiny
  n_embd: 32
train:
  batch_size: 2
  warmup_iters: 2
  eval_interval: 4
  eval_iters: 2
  checkpoint_interval: 2
  dtype: float32
"""
# Passed as the `overrides` parameter, as a user would in the UI's form.
TRAIN_OVERRIDES = {"train.max_iters": 12}

# Saved pages for the web stage (read through the same extraction as fetched ones): real articles, plus one
# PDF with a password, which the crawl report must list as skipped.
WEB_PAGES = ("html/trafilatura/en.wikipedia.org.tsne.html", "html/trafilatura/blog.python.org.html",
             "html/readability/ars-1.html", "html/readability/bbc-1.html", "pdf/pypdf-encrypted-file.pdf")


def write_train_config(folder: Path) -> Path:
    corpora = Path(os.environ.get("CURRICULUM_SHARED", ROOT.parent / "shared")) / "corpora"
    config_path = folder / "tiny.yaml"
    config_path.write_text(TRAIN_CONFIG.format(
        book=corpora / "books" / "paine_common-sense_pg147.txt", data_dir=folder / "data",
        web=", ".join(str(corpora / "web" / page) for page in WEB_PAGES),
    ))
    return config_path


# The comparison tests' model and settings, below their stages: a tiny model, a few iterations, exact float32.
COMPARE_TAIL = """\
data:
  data_dir: {data_dir}
model:
  preset: tiny
  n_embd: 32
train:
  batch_size: 4
  warmup_iters: 2
  eval_iters: 2
  max_iters: 8
  dtype: float32
"""
