"""The environment of flow runs has one home (flows/environment.py); prefect.yaml repeats it, and importing the
flow sets nothing (so `serve.py --crash-after 0` really runs without heartbeats)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flows.environment import HEARTBEAT_S, run_environment, set_run_environment

ROOT = Path(__file__).resolve().parents[2]


def test_prefect_yaml_sets_the_same_environment_as_the_python_constants():
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text(encoding="utf-8"))
    env = config["definitions"]["work_pool"]["job_variables"]["env"]
    assert env == run_environment()
    assert env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == str(HEARTBEAT_S) == "30"
    for deployment in config["deployments"]:
        assert deployment["work_pool"]["job_variables"]["env"] == run_environment(), deployment["name"]


@pytest.mark.slow  # a Python process importing the flow
def test_importing_the_flow_and_serve_sets_no_environment():
    names = sorted(run_environment())
    env = {key: value for key, value in os.environ.items() if key not in names}
    code = (
        "import json, os, sys\n"
        "import flows.curriculum, deployments.serve\n"
        f"print(json.dumps({{name: os.environ.get(name) for name in {names!r}}}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {name: None for name in names}


def test_set_run_environment_keeps_values_already_set_and_can_leave_the_heartbeat_out():
    environ = {"PREFECT_LOGGING_EXTRA_LOGGERS": "mine", "OMP_WAIT_POLICY": "ACTIVE"}
    set_run_environment(environ, heartbeat=False)
    assert environ == {"PREFECT_LOGGING_EXTRA_LOGGERS": "mine", "OMP_WAIT_POLICY": "ACTIVE"}
    environ = {}
    set_run_environment(environ)
    assert environ == {"PREFECT_LOGGING_EXTRA_LOGGERS": "curriculum,data,model,tasks",
                       "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30", "OMP_WAIT_POLICY": "PASSIVE"}
