"""Kill the CLI with SIGKILL at random moments while it prepares and trains, resume each time, compare.

    python bench/chaos.py [--kills 20] [--seed 0] [--keep]

A small real curriculum (tiny model; 300 TinyStories stories from the hub mirror, then a Project Gutenberg
book from ../shared) runs once unbroken in one folder, which also measures how long a run takes. Then the
same command runs in a second folder and is killed `--kills` times at random moments: a quarter of them
during Prefect's start-up, the rest after the flow run began, up to twice the fair share of the remaining
work, so kills land in fetching, tokenizing, sharding, training and checkpointing alike. The whole process group goes
(`os.killpg`): the CLI and the temporary Prefect server it started. After each kill the same command runs
again; after the last, it runs to completion. The final weights of the two folders are then compared
tensor by tensor, byte for byte.

Prints one line per kill (when, and the last line the run printed), and last
`kills=N resumed=N identical=yes|no`: kills delivered, reruns after a kill that carried on without an error
(killed again later or finished), and whether the final weights are bit-equal. A life that finishes before its
kill ends the series early (everything after it would come from the cache), so N can be below --kills; the
line before says so.

Kill moments scale with the unbroken run's time, so a machine much busier during that run than later gives long
windows and fewer kills. Measured here, 2 cores shared with other work (load 7-9), defaults: 18.5 min, unbroken
run 99 s (20 s of it Prefect's start-up), `kills=19 resumed=19 identical=yes`, the 20th life finishing first;
again with the windows capped: 15.4 min, unbroken run 323 s under heavier load, `kills=9 resumed=9 identical=yes`.

Needs CURRICULUM_HUB_MIRROR (default ../shared/hub) and TIKTOKEN_CACHE_DIR (default ../shared/tiktoken).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK_STARTED = b"Beginning flow run"  # Prefect's log line once its temporary server is up and the flow starts
SHARED = Path(os.environ.get("CURRICULUM_SHARED", ROOT.parent / "shared"))

CONFIG = """\
stages:
  - name: warmup
    dataset_key: roneneldan/TinyStories
    block_size: 32
    n_epochs: 1
    n_items: 300
  - name: books
    dataset_key: local-files
    files: [{book}]
    block_size: 64
    n_epochs: 1
model:
  preset: tiny
  n_embd: 32
train:
  batch_size: 2
  warmup_iters: 2
  max_iters: 60
  eval_interval: 20
  eval_iters: 2
  checkpoint_interval: 3
  device: cpu
  dtype: float32
"""


def cli_command(config: Path, folder: Path) -> list[str]:
    return [sys.executable, str(ROOT / "flows" / "curriculum.py"), "--config", str(config),
            "--data-dir", str(folder / "data"), "--out-dir", str(folder / "run")]


def environment(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PREFECT_API_URL", None)  # each run starts its own temporary server, as a plain CLI run does
    env.setdefault("CURRICULUM_HUB_MIRROR", str(SHARED / "hub"))
    env.setdefault("TIKTOKEN_CACHE_DIR", str(SHARED / "tiktoken"))
    # The temporary server gets 20 s to come up by default: too little on a loaded 2-core machine.
    env.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    env.update(PREFECT_HOME=str(home), DO_NOT_TRACK="1", PYTHONUNBUFFERED="1")
    return env


def start(config: Path, folder: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        # A session of its own: the kill reaches the temporary Prefect server too, and nothing else.
        return subprocess.Popen(cli_command(config, folder), cwd=folder, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def kill_group(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the group is gone once no member is left to signal
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise RuntimeError(f"process group {process.pid} still has members 10 s after SIGKILL")


def last_line(log: Path) -> str:
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return (lines[-1] if lines else "(nothing printed yet)")[:100]


def started_work(log: Path, offset: int) -> bool:
    """Whether the run logging to `log` from `offset` on is past Prefect's start-up (its flow run has begun)."""
    with open(log, "rb") as file:
        file.seek(offset)
        return WORK_STARTED in file.read()


def run_to_end(config: Path, folder: Path, env: dict[str, str], log: Path) -> tuple[float, float]:
    """Seconds of Prefect's start-up (until the flow run began) and of the whole run."""
    started = time.monotonic()
    startup = None
    offset = log.stat().st_size if log.exists() else 0
    process = start(config, folder, env, log)
    while process.poll() is None:
        if startup is None and started_work(log, offset):
            startup = time.monotonic() - started
        time.sleep(0.1)
    if process.returncode != 0:
        raise SystemExit(f"the run in {folder} failed with exit code {process.returncode}:\n"
                         f"{log.read_text(errors='replace')[-4000:]}")
    total = time.monotonic() - started
    return (startup or 0.0), total


def weights_identical(a: Path, b: Path) -> bool:
    from safetensors.numpy import load_file

    left, right = load_file(str(a)), load_file(str(b))
    return left.keys() == right.keys() and all(
        left[k].dtype == right[k].dtype and left[k].shape == right[k].shape and left[k].tobytes() == right[k].tobytes()
        for k in left
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python bench/chaos.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs to deliver (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments (default 0)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (printed) for a look")
    args = parser.parse_args()
    if args.kills < 1:
        parser.error(f"--kills must be at least 1, got {args.kills}")
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="chaos-"))
    config = work / "chaos.yaml"
    config.write_text(CONFIG.format(book=SHARED / "corpora" / "books" / "paine_common-sense_pg147.txt"))
    env = environment(work / "prefect-home")
    started = time.monotonic()
    try:
        unbroken, broken = work / "unbroken", work / "broken"
        unbroken.mkdir()
        broken.mkdir()
        startup_s, reference_s = run_to_end(config, unbroken, env, unbroken / "cli.log")
        work_s = reference_s - startup_s
        print(f"unbroken run: {reference_s:.1f}s, of which {startup_s:.1f}s start-up", flush=True)

        log = broken / "cli.log"
        kills = resumed = 0
        after_kill = False
        while kills < args.kills:
            # Every life pays Prefect's start-up again (its length varies with the machine's load), so the
            # clock starts when the flow run begins: one kill in four lands in the start-up itself, the others
            # up to twice the fair share of the work left per remaining kill, spread over preparing and training;
            # at most half the work, so the last kills rarely come after a run that had little left to do.
            in_startup = rng.random() < 0.25
            window = min(2 * work_s / (args.kills - kills + 1), work_s / 2)
            delay = rng.uniform(0, startup_s if in_startup else window)
            offset = log.stat().st_size if log.exists() else 0
            process = start(config, broken, env, log)
            began = time.monotonic()
            while not in_startup and process.poll() is None and not started_work(log, offset):
                time.sleep(0.05)
            try:
                process.wait(timeout=max(0.0, delay - (time.monotonic() - began) if in_startup else delay))
            except subprocess.TimeoutExpired:
                kill_group(process)
                resumed += after_kill
                kills += 1
                after_kill = True
                where = "into start-up" if in_startup else "into the flow run"
                print(f"kill {kills:2d} {delay:5.1f}s {where}: {last_line(log)}", flush=True)
                continue
            if process.returncode != 0:
                raise SystemExit(f"a rerun after kill {kills} failed with exit code {process.returncode}:\n"
                                 f"{log.read_text(errors='replace')[-4000:]}")
            # It finished before the kill came: everything left is cached, further kills would test nothing.
            resumed += after_kill
            after_kill = False
            print(f"run finished within {delay:.1f}s, before its kill; stopping with {kills} kills", flush=True)
            break
        if after_kill:
            run_to_end(config, broken, env, log)
            resumed += 1
        weights = "run/final/model.safetensors"
        identical = weights_identical(unbroken / weights, broken / weights)
        print(f"total {time.monotonic() - started:.0f}s; work folder {work}", flush=True)
        print(f"kills={kills} resumed={resumed} identical={'yes' if identical else 'no'}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
