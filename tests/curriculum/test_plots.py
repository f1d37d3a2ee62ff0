"""curriculum/plots.py: the loss curve across the whole curriculum, stage boundaries marked."""

from __future__ import annotations

import pytest

from curriculum.plots import render_loss_curve, save_loss_curve, stage_spans
from tests.support.metrics import eval_rows

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_the_loss_curve_marks_stages_and_refuses_rows_it_cannot_plot(tmp_path):
    rows = eval_rows({"warmup": 40, "books": 60})
    assert stage_spans(rows) == [("warmup", 10, 40), ("books", 55, 100)]
    path = save_loss_curve(rows, tmp_path / "run" / "loss_curve.png")
    assert path.read_bytes().startswith(PNG_MAGIC)
    assert not [p for p in path.parent.iterdir() if p != path]  # no temporary file left beside it
    svg = render_loss_curve(rows, fmt="svg").decode()
    assert "warmup" in svg and "books" in svg
    with pytest.raises(ValueError, match="no evaluation rows to plot"):
        save_loss_curve([], tmp_path / "empty.png")
    with pytest.raises(ValueError, match="evaluation row 1 lacks val_loss"):
        save_loss_curve([{"stage": "a", "iter_num": 1, "train_loss": 2.0}], tmp_path / "bad.png")
    assert not (tmp_path / "empty.png").exists()


def test_the_learning_rate_is_a_second_axis_when_rows_have_it():
    rows = eval_rows({"warmup": 40, "books": 60})
    svg = render_loss_curve(rows, fmt="svg").decode()
    assert "learning rate" in svg
    without = [{key: value for key, value in row.items() if key != "lr"} for row in rows]
    assert "learning rate" not in render_loss_curve(without, fmt="svg").decode()
