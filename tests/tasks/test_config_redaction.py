"""A password in a stage's `urls` never reaches what a run stores or shows whole: run.json, the run summary."""

from __future__ import annotations

import json

from curriculum.presets import PRESETS
from curriculum.training.run_dir import fingerprint_hash, run_fingerprint
from tasks.ui_publish import run_summary_markdown

SECRET_URL = "https://reader:hunter2@example.org/private/essay.html"


def config_with_secret_url():
    config = PRESETS["simple"]()
    stages = [
        stage.model_copy(update={"urls": [SECRET_URL]}) if stage.name == "pretrain" else stage
        for stage in config.stages
    ]
    return config.model_copy(update={"stages": stages})


def test_run_fingerprint_keeps_the_url_but_not_its_password():
    config = config_with_secret_url()
    fingerprint = run_fingerprint(config, config.model, config.train)
    text = json.dumps(fingerprint)
    assert "hunter2" not in text and "reader:" not in text
    assert "https://***@example.org/private/essay.html" in text
    # another password for the same page is the same run: the page's content is what the cache keys hold
    other = config.model_copy(update={"stages": [
        s.model_copy(update={"urls": [SECRET_URL.replace("hunter2", "other")]}) if s.name == "pretrain" else s
        for s in config.stages
    ]})
    assert fingerprint_hash(run_fingerprint(other, other.model, other.train)) == fingerprint_hash(fingerprint)


def test_run_summary_shows_the_resolved_config_without_the_password():
    markdown = run_summary_markdown(config_with_secret_url(), git_commit="abc", stages=[], final_dir=None)
    assert "hunter2" not in markdown
    assert "https://***@example.org/private/essay.html" in markdown
