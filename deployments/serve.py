"""Serve the deployments `curriculum/simple`, `curriculum/default`, `compare/simple` and `compare/default` from
this one process.

    prefect server start                                  # another terminal; binds 127.0.0.1:4200
    export PREFECT_API_URL=http://127.0.0.1:4200/api
    python deployments/serve.py                           # from the project root: out/ lands there
    prefect deployment run curriculum/default             # or "Run" on the deployment's page in the UI
    prefect deployment run curriculum/simple --param prepare_only=true --param overrides='{"train.max_iters": 20}'

Each run executes in a child process of this one, with this process's working directory and environment
(CURRICULUM_HUB_MIRROR, TIKTOKEN_CACHE_DIR, ...), so relative paths in a config (the default `out/data`,
`out/runs/<name>`) are the same folders a CLI run from the same directory uses, and the two share caches.
Users who prefer a work pool and `prefect worker start` use prefect.yaml instead (see docs/serve.md).

Every path a served run's parameters name (config_path, data_dir, out_dir, a stage's files, paths, urls_file)
must lie under this folder or a folder given with `--allow-path DIR` (repeatable); anything else is refused
before any work (curriculum/allowed_paths.py). The API itself must be protected: start the server with
    PREFECT_SERVER_CSRF_PROTECTION_ENABLED=true PREFECT_SERVER_CORS_ALLOWED_ORIGINS=http://127.0.0.1:4200 \
        prefect server start
so that a web page open in your browser cannot call it; this script warns when it can, and when the API is
reached over the network without an auth string (deployments/server_security.py).
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import cast

ROOT = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    # `python deployments/serve.py` puts deployments/ first on sys.path (nothing there shadows a package);
    # the project root must be importable too, here and in the child process each flow run starts.
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))

import httpx
from prefect import serve
from prefect.deployments.runner import RunnerDeployment
from prefect.settings import get_current_settings
from prefect.types.entrypoint import EntrypointType

from curriculum.allowed_paths import ALLOWED_PATHS_ENV
from curriculum.presets import PRESETS
from deployments.crash_detection import DEFAULT_AFTER_S, ensure_crash_automation
from deployments.server_security import browser_warnings, exposure_warning
from flows.compare import compare
from flows.curriculum import curriculum
from flows.environment import HEARTBEAT_S, set_run_environment

TAGS = ["curriculum"]


def build_deployments() -> list[RunnerDeployment]:
    """Per preset, `curriculum/<preset>` and `compare/<preset>` (the curriculum against flat, mixed, lengths and
    reversed arms at matched compute, flows/compare.py); the preset is the default of their `type`."""
    compare_deployments = [
        compare.to_deployment(
            name=name,
            parameters={"type": name},
            description=f"Does the curriculum pay? {(PRESETS[name].__doc__ or '').strip()} Parameters as on the "
            "command line of flows/compare.py: type, config_path, overrides, seeds, arms "
            "(curriculum,flat,mixed,lengths,reversed), match (tokens or flops), out_dir, evals, versus_config_path "
            "(a second YAML curriculum, --versus), schedules (LR schedules every arm trains under, e.g. "
            "per-stage,wsd,constant), judge (raw or ema).",
            tags=TAGS,
            entrypoint_type=EntrypointType.MODULE_PATH,  # a module path, as for the curriculum deployments below
        )
        for name in PRESETS
    ]
    curriculum_deployments = [
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
    # to_deployment returns a coroutine inside an event loop (Prefect's async_dispatch), so it is typed as either;
    # this runs in synchronous code, where it returns the deployment.
    return cast(list[RunnerDeployment], compare_deployments + curriculum_deployments)


def warn_if_exposed() -> None:
    """Say so when others (other machines, or web pages in this machine's browser) can use the API."""
    settings = get_current_settings()
    url = str(settings.api.url)
    auth = settings.api.auth_string.get_secret_value() if settings.api.auth_string else None
    warnings = [w for w in [exposure_warning(url, auth)] if w]
    headers = {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()} if auth else None
    try:
        warnings += browser_warnings(url, headers=headers)
    except httpx.HTTPError as error:  # the check only informs; serving itself reports an unreachable server
        warnings.append(f"could not check the Prefect server's CORS and CSRF settings at {url}: {error}")
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr, flush=True)


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
    parser.add_argument(
        "--allow-path", action="append", default=[], metavar="DIR",
        help="a folder (besides this one) that runs may read and write through their parameters; repeatable",
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
    for folder in args.allow_path:
        if not Path(folder).expanduser().is_dir():
            parser.error(f"--allow-path {folder}: no such folder; give an existing folder runs may use")
    # Flow runs are child processes of this one and inherit the roots; a run's parameters cannot change them.
    os.environ[ALLOWED_PATHS_ENV] = os.pathsep.join(str(Path(f).expanduser().resolve()) for f in args.allow_path)
    warn_if_exposed()
    # Flow runs are child processes of this one: they inherit its environment. Without the automation
    # (--crash-after 0) nothing listens for heartbeats, so none are sent.
    set_run_environment(heartbeat=bool(args.crash_after))
    if args.crash_after:
        ensure_crash_automation(args.crash_after)
    serve(*build_deployments(), limit=args.limit, pause_on_shutdown=False)


if __name__ == "__main__":
    main()
