"""Table artifact data is strict JSON: numbers JSON cannot hold become empty cells, text stays as it is."""

from __future__ import annotations

import json
import math

import pytest

from tasks.ui_artifacts import table_json


def _refuse(constant: str):
    raise AssertionError(f"{constant} is not JSON")


def test_nan_and_infinities_become_null_and_text_is_kept():
    rows = [
        {"stage": "a|b", "loss": math.nan, "rate": math.inf, "low": -math.inf, "none": None, "n": 3, "x": 0.5},
        {"stage": "c", "forgetting": {"a": math.nan, "b": 1.25}, "losses": [math.inf, 2.0]},
    ]
    parsed = json.loads(table_json(rows), parse_constant=_refuse)
    assert parsed == [
        {"stage": "a|b", "loss": None, "rate": None, "low": None, "none": None, "n": 3, "x": 0.5},
        {"stage": "c", "forgetting": {"a": None, "b": 1.25}, "losses": [None, 2.0]},
    ]


def test_a_value_json_cannot_hold_is_an_error_not_a_silent_string():
    with pytest.raises(TypeError):
        table_json([{"what": object()}])
