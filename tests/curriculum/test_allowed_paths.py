"""Confinement of a served run's paths: symlinks and `..` resolved before the check, every path field seen."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from curriculum.allowed_paths import (
    ALLOWED_PATHS_ENV,
    PathNotAllowed,
    allowed_roots,
    check_path,
    confine_paths,
    glob_base,
)
from curriculum.config import validate_run_config


@pytest.fixture
def layout(tmp_path: Path) -> dict[str, Path]:
    root, outside = tmp_path / "served", tmp_path / "elsewhere"
    (root / "books").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.txt").write_text("not for training")
    (root / "link-out").symlink_to(outside, target_is_directory=True)
    return {"root": root, "outside": outside}


def test_a_path_under_the_root_is_allowed_and_returned_resolved(layout):
    root = layout["root"]
    assert check_path("x", root / "books" / "a.txt", [root]) == root.resolve() / "books" / "a.txt"
    assert check_path("x", root, [root]) == root.resolve()


def test_dot_dot_out_of_the_root_is_refused_with_the_parameter_path_and_roots(layout):
    root = layout["root"]
    with pytest.raises(PathNotAllowed) as error:
        check_path("stages.books.files[0]", f"{root}/books/../../elsewhere/secret.txt", [root])
    message = str(error.value)
    assert "stages.books.files[0]" in message
    assert str(layout["outside"].resolve() / "secret.txt") in message
    assert str(root) in message and "--allow-path" in message


def test_a_symlink_inside_the_root_that_leads_out_is_refused(layout):
    root = layout["root"]
    with pytest.raises(PathNotAllowed, match="link-out/secret.txt"):
        check_path("stages.web.urls_file", root / "link-out" / "secret.txt", [root])


def test_a_sibling_folder_that_shares_the_roots_name_prefix_is_refused(layout):
    root = layout["root"]
    sibling = root.parent / (root.name + "-other")
    sibling.mkdir()
    with pytest.raises(PathNotAllowed):
        check_path("data.data_dir", sibling, [root])


def test_relative_paths_resolve_against_the_working_folder(layout, monkeypatch):
    monkeypatch.chdir(layout["root"])
    assert check_path("train.out_dir", "out/runs/x", [layout["root"]]) == layout["root"].resolve() / "out/runs/x"
    with pytest.raises(PathNotAllowed):
        check_path("train.out_dir", "../elsewhere", [layout["root"]])


def test_roots_are_the_working_folder_plus_the_environment_list(layout):
    environ = {ALLOWED_PATHS_ENV: os.pathsep.join([str(layout["outside"]), ""])}
    assert allowed_roots(environ, cwd=layout["root"]) == [layout["root"].resolve(), layout["outside"].resolve()]
    assert allowed_roots({}, cwd=layout["root"]) == [layout["root"].resolve()]


def test_a_glob_is_checked_by_the_folder_before_its_first_wildcard():
    assert glob_base("/data/**/*.txt") == "/data"
    assert glob_base("books/*.txt") == "books"
    assert glob_base("*.txt") == "."
    assert glob_base("/data/a.txt") == "/data/a.txt"


def config(layout, **stage_fields) -> dict:
    root = layout["root"]
    stage = {"name": "books", "dataset_key": "local-files", "block_size": 32, "n_epochs": 1,
             "files": [str(root / "books")]}
    stage.update(stage_fields)
    return {"stages": [stage], "data": {"data_dir": str(root / "data")}, "train": {"out_dir": str(root / "run")}}


def test_a_config_within_the_roots_passes(layout):
    confine_paths(validate_run_config(config(layout)), [layout["root"]])


@pytest.mark.parametrize("field", ["data_dir", "out_dir", "files", "paths", "urls_file", "dataset_key", "hub_mirror"])
def test_every_path_field_is_confined(layout, field):
    outside = str(layout["outside"])
    raw = config(layout)
    stage = raw["stages"][0]
    if field == "data_dir":
        raw["data"]["data_dir"] = outside
    elif field == "out_dir":
        raw["train"]["out_dir"] = outside
    elif field == "files":
        stage["files"] = [f"{outside}/**/*.txt"]
    elif field == "hub_mirror":
        raw["data"]["hub_mirror"] = outside
    else:
        stage.pop("files")
        if field == "dataset_key":
            stage["dataset_key"] = outside
        else:
            stage["dataset_key"] = "custom-scrape"
            stage[field] = [outside] if field == "paths" else f"{outside}/secret.txt"
    with pytest.raises(PathNotAllowed, match=field):
        confine_paths(validate_run_config(raw), [layout["root"]])


def test_a_hub_id_is_not_a_path_but_a_hub_id_with_dot_dot_is(layout, monkeypatch):
    monkeypatch.chdir(layout["root"])
    raw = config(layout, dataset_key="roneneldan/TinyStories")
    raw["stages"][0].pop("files")
    confine_paths(validate_run_config(raw), [layout["root"]])
    raw["stages"][0]["dataset_key"] = "../elsewhere"
    with pytest.raises(PathNotAllowed, match="dataset_key"):
        confine_paths(validate_run_config(raw), [layout["root"]])


@pytest.mark.parametrize("section, key", [("data", "data_dir"), ("train", "out_dir")])
def test_a_written_folder_may_not_be_a_root_itself_which_restart_would_move_aside(layout, section, key):
    raw = config(layout)
    raw[section][key] = str(layout["root"] / "books" / "..")
    with pytest.raises(PathNotAllowed, match=f"{section}.{key} .* not inside the folders"):
        confine_paths(validate_run_config(raw), [layout["root"]])


def test_a_glob_with_dot_dot_is_refused_whatever_its_levels():
    for pattern in ("*/../../../etc/*.txt", "books/**/../../x/*.txt"):
        with pytest.raises(PathNotAllowed, match="wildcard and '..'"):
            glob_base(pattern)
    assert glob_base("../books/*.txt") == "../books"  # resolved and checked like any folder


def test_a_dataset_key_is_checked_where_the_mirror_would_find_it_too(tmp_path, monkeypatch):
    """`../work/x` is inside the working folder from here, but is no folder: the reader then looks it up under
    the mirror, at `<mirror>/../work/x`, outside every root. That reading is checked too."""
    work, mirror = tmp_path / "work", tmp_path / "mirror" / "hub"
    work.mkdir()
    mirror.mkdir(parents=True)
    monkeypatch.chdir(work)
    config = validate_run_config({
        "name": "t", "stages": [{"name": "a", "dataset_key": "../work/x", "block_size": 8, "n_epochs": 1}],
        "data": {"hub_mirror": str(mirror), "data_dir": str(work / "d")},
        "train": {"out_dir": str(work / "o")},
    })
    with pytest.raises(PathNotAllowed, match=r"dataset_key .*mirror/work/x"):
        confine_paths(config, [work, mirror])
