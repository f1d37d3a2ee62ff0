"""Serve the deployments `curriculum/simple` and `curriculum/default` from this one process.

    prefect server start                                  # another terminal; binds 127.0.0.1:4200
    export PREFECT_API_URL=http://127.0.0.1:4200/api
    python deployments/serve.py                           # from the project root: out/ lands there
    prefect deployment run curriculum/default             # or "Run" on the deployment's page in the UI
    prefect deployment run curriculum/simple --param prepare_only=true --param overrides='{"train.max_iters": 20}'

Each run executes in a child process of this one, with this process's working directory and environment
(CURRICULUM_HUB_MIRROR, TIKTOKEN_CACHE_DIR, ...), so relative paths in a config (the default `out/data`,
`out/runs/<name>`) are the same folders a CLI run from the same directory uses, and the two share caches.
Users who prefer a work pool and `prefect worker start` use prefect.yaml instead (see the README).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    # `python deployments/serve.py` puts deployments/ first on sys.path (nothing there shadows a package);
    # the project root must be importable too, here and in the child process each flow run starts.
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))

from prefect import serve
from prefect.deployments.runner import RunnerDeployment
from prefect.settings import get_current_settings
from prefect.types.entrypoint import EntrypointType

from curriculum.presets import PRESETS
from deployments.crash_detection import DEFAULT_AFTER_S, ensure_crash_automation
from flows.curriculum import curriculum
from flows.environment import HEARTBEAT_S, set_run_environment

TAGS = ["curriculum"]


def build_deployments() -> list[RunnerDeployment]:
    """One deployment per preset (`curriculum/simple`, `curriculum/default`); its `type` is the default."""
    return [
        curriculum.to_deployment(
            name=name,
            parameters={"type": name},
            description=f"{(PRESETS[name].__doc__ or '').strip()} Parameters as on the command line: "
            "type, config_path (a YAML curriculum), overrides ({\"train.max_iters\": 20}), resume, restart, "
            "prepare_only.",
            tags=TAGS,
            # `flows.curriculum.curriculum`, imported as a module: loading flows/curriculum.py by its path
            # would register it as the module `curriculum` and hide the package of that name.
            entrypoint_type=EntrypointType.MODULE_PATH,
        )
        for name in PRESETS
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python deployments/serve.py",
        description="Serve curriculum/simple and curriculum/default; start runs with "
        "`prefect deployment run curriculum/<name>` or from the UI.",
    )
    parser.add_argument(
        "--limit", type=int, default=1,
        help="flow runs at a time (default 1: training takes every core; more runs wait their turn)",
    )
    parser.add_argument(
        "--crash-after", type=float, default=DEFAULT_AFTER_S, metavar="SECONDS",
        help=f"mark a run Crashed when its process sent no heartbeat for this long, so it can be retried "
        f"(default {DEFAULT_AFTER_S}; 0 turns the automation off; heartbeats every {HEARTBEAT_S}s)",
    )
    args = parser.parse_args(argv)
    if args.crash_after and args.crash_after < 2 * HEARTBEAT_S:
        parser.error(f"--crash-after must be 0 or at least {2 * HEARTBEAT_S} (two heartbeats), got {args.crash_after}")
    if args.limit < 1:
        parser.error(f"--limit must be at least 1, got {args.limit}")
    if not get_current_settings().api.url:
        # Without it Prefect would serve against a temporary in-process server nobody else can reach.
        parser.error(
            "PREFECT_API_URL is not set, so there is no Prefect server to serve to. Start one with "
            "`prefect server start` and then: export PREFECT_API_URL=http://127.0.0.1:4200/api "
            "(or `prefect config set PREFECT_API_URL=http://127.0.0.1:4200/api`)"
        )
    # Flow runs are child processes of this one: they inherit its environment. Without the automation
    # (--crash-after 0) nothing listens for heartbeats, so none are sent.
    set_run_environment(heartbeat=bool(args.crash_after))
    if args.crash_after:
        ensure_crash_automation(args.crash_after)
    serve(*build_deployments(), limit=args.limit, pause_on_shutdown=False)


if __name__ == "__main__":
    main()
