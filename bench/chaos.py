"""Kill the CLI with SIGKILL as its run passes planned points of its work, resume each time, compare.

    python bench/chaos.py [--kills 20] [--seed 0] [--keep]

A small real curriculum (tiny model; 300 TinyStories stories from the hub mirror, then a Project Gutenberg
book from ../shared) runs once unbroken in one folder; its log says what the work is: the preparation steps
(fetch, tokenize and shard of each stage: the tasks that finished) and each stage's training iterations. Then
the same command runs in a second folder and is killed exactly `--kills` times. Kill moments come from the
run's progress, never from a clock, so a busy machine changes how long the bench takes, not what it tests:
progress is the preparation steps finished (read from this life's log) plus, per stage, the iteration reached
(its progress bar in the log, or its newest checkpoint folder, whichever is further). Preparation weighs a
quarter of the work, shared by its steps; the iterations the rest. Each life aims at a point up to 1.5 times
the fair share of the work left per remaining kill past where the last life was killed (never less than one
iteration past it), and is killed once its progress reaches that point, so every life gets further than the
one before and the run always finishes. The whole process group goes (`os.killpg`): the CLI and the temporary
Prefect server it started. After each kill the same command runs again; after the last, it runs to
completion. The final weights of the two folders are then compared tensor by tensor, byte for byte.

Prints the work plan, one line per kill (the progress it landed at, where that was, and the last line the
run printed), and last `kills=N resumed=N identical=yes|no`: kills delivered, reruns after a kill that carried
on without an error (killed again later or finished), and whether the final weights are bit-equal. Exits
non-zero when fewer than --kills kills landed (a life finished before reaching its point: more kills than
the run has progress points to tell apart, a new checkpoint every 3 iterations here).

No kill lands in Prefect's start-up (a life killed there would make no progress), nor between two log lines
or checkpoints: a kill comes within 50 ms of the run showing the point it aimed at.

Measured here, 2 cores shared with other work (load 3-4), under `nice -n 15`, defaults: 7.2 min, unbroken run
46 s (20 s of it Prefect's start-up), `kills=20 resumed=20 identical=yes`: 4 kills in preparation (after
tokenize, fetch, tokenize and shard steps), 7 in each stage's training; `--kills 5`: 2.9 min, `kills=5
resumed=5 identical=yes`. The old wall-clock windows landed 19, then 9, of 20.

Needs CURRICULUM_HUB_MIRROR (default ../shared/hub) and TIKTOKEN_CACHE_DIR (default ../shared/tiktoken).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from curriculum.training.checkpoints import END, in_stage_dirs, stage_dir

ROOT = Path(__file__).resolve().parents[1]
WORK_STARTED = b"Beginning flow run"  # Prefect's log line once its temporary server is up and the flow starts
# A task that finished, ran or taken from the cache: `Task run 'shard-books' - Finished in state Cached(...)`.
TASK_FINISHED = re.compile(rb"Task run '([^']+)' - Finished in state (?:Completed|Cached)")
# A tokenize chunk (`tokenize-books-1/1`): not a step of its own, as a cached parent task skips its chunks.
CHUNK_TASK = re.compile(r"-\d+/\d+$")
# A stage's progress bar (curriculum/training/progress.py): `train books:  38%|███▊      | 23/60 [00:02<...`.
STAGE_BAR = re.compile(rb"train (\S+?):\s*\d+%\|[^|\r\n]*\|\s*(\d+)/(\d+)")
PREPARATION_SHARE = 0.25  # of the work, hence of the kills: few steps, but where most data files are written
POLL_S = 0.05
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


def kill_group(process: subprocess.Popen) -> bool:
    """SIGKILL the CLI's process group; whether that is what ended the CLI (it may have just exited by itself)."""
    os.killpg(process.pid, signal.SIGKILL)  # the unreaped CLI still holds its group's id, even once it exited
    killed = process.wait() == -signal.SIGKILL
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the group is gone once no member is left to signal
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return killed
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


def log_since(log: Path, offset: int) -> bytes:
    with open(log, "rb") as file:
        file.seek(offset)
        return file.read()


@dataclass(frozen=True)
class WorkPlan:
    """What a run does, as its log shows it: preparation steps, then each stage's iterations (curriculum order)."""

    preparation: frozenset[str]
    stages: tuple[tuple[str, int], ...]

    @property
    def iterations(self) -> int:
        return sum(total for _, total in self.stages)

    @property
    def step_weight(self) -> float:
        """Progress one preparation step is worth, so that preparation is PREPARATION_SHARE of the total."""
        return self.iterations * PREPARATION_SHARE / (1 - PREPARATION_SHARE) / len(self.preparation)

    @property
    def total(self) -> float:
        return self.step_weight * len(self.preparation) + self.iterations

    @classmethod
    def from_unbroken(cls, text: bytes, run_dir: Path) -> WorkPlan:
        stages: dict[str, int] = {}
        for name, _, total in STAGE_BAR.findall(text):
            stages.setdefault(name.decode(), int(total))
        training = {f"train-{name}" for name in stages}
        finished = {name.decode() for name in TASK_FINISHED.findall(text)}
        preparation = frozenset(n for n in finished - training if not CHUNK_TASK.search(n))
        if not stages or not preparation or not training <= finished:
            raise SystemExit(f"the unbroken run's log shows stages {sorted(stages)}, finished tasks "
                             f"{sorted(finished)}: expected a `train <stage>:` progress bar and a finished "
                             f"`train-<stage>` task per stage, and some preparation tasks. Update STAGE_BAR and "
                             f"TASK_FINISHED in {__file__} to what the CLI prints now")
        plan = cls(preparation, tuple(stages.items()))
        for index, (name, _) in enumerate(plan.stages):
            if not (stage_dir(run_dir, index, name) / END).is_dir():
                raise SystemExit(f"the unbroken run trained stage {name!r} but has no "
                                 f"{stage_dir(run_dir, index, name) / END}: the stages' order in its log is not "
                                 f"their order in the curriculum")
        return plan


def progress(plan: WorkPlan, text: bytes, run_dir: Path) -> tuple[float, str]:
    """How far a life has got, and where that is: `text` is its log so far, `run_dir` its run folder.

    Preparation steps count when this life's log shows them finished (a rerun finishes the earlier ones again
    from the cache, at once); a stage's iterations are the furthest of its progress bar in this log, its newest
    checkpoint folder, and all of them once its end checkpoint exists or its training task finished."""
    finished = {name.decode() for name in TASK_FINISHED.findall(text)}
    bars = {name.decode(): int(n) for name, n, _ in STAGE_BAR.findall(text)}  # the last value of each bar
    prepared = len(plan.preparation & finished)
    value = plan.step_weight * prepared
    where = f"prepared {prepared}/{len(plan.preparation)}"
    for index, (name, total) in enumerate(plan.stages):
        folder = stage_dir(run_dir, index, name)
        if (folder / END).is_dir() or f"train-{name}" in finished:
            reached = total
        else:
            reached = max([bars.get(name, 0)] + [stage_iter for stage_iter, _ in in_stage_dirs(folder)])
        value += reached
        if reached:
            where = f"train {name} {reached}/{total}"
    return value, where


def kill_moment(plan: WorkPlan, last_kill: float, kills_left: int, rng: random.Random) -> float:
    """The progress the next life is killed at: past the last kill by up to 1.5 fair shares of the work left."""
    fair_share = (plan.total - last_kill) / (kills_left + 1)
    return last_kill + max(1.0, fair_share * rng.uniform(0.5, 1.5))


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
        plan = WorkPlan.from_unbroken(log_since(unbroken / "cli.log", 0), unbroken / "run")
        print(f"unbroken run: {reference_s:.1f}s, of which {startup_s:.1f}s start-up; work: "
              f"{len(plan.preparation)} preparation steps x {plan.step_weight:.1f} + "
              + " + ".join(f"{total} iterations of {name}" for name, total in plan.stages)
              + f" = {plan.total:.0f}", flush=True)

        log = broken / "cli.log"
        kills = resumed = 0
        last_kill = 0.0  # the progress at which the last life was killed
        after_kill = False
        while kills < args.kills:
            aim = kill_moment(plan, last_kill, args.kills - kills, rng)
            offset = log.stat().st_size if log.exists() else 0
            process = start(config, broken, env, log)
            while process.poll() is None and progress(plan, log_since(log, offset), broken / "run")[0] < aim:
                time.sleep(POLL_S)
            if process.returncode is None and kill_group(process):
                # Read once the group is gone: a checkpoint it wrote after the last look counts too.
                last_kill, where = progress(plan, log_since(log, offset), broken / "run")
                resumed += after_kill
                kills += 1
                after_kill = True
                print(f"kill {kills:2d} at {last_kill:5.1f}/{plan.total:.0f} (aimed at {aim:5.1f}), {where}: "
                      f"{last_line(log)}", flush=True)
                continue
            if process.returncode != 0:
                raise SystemExit(f"a rerun after kill {kills} failed with exit code {process.returncode}:\n"
                                 f"{log.read_text(errors='replace')[-4000:]}")
            # It finished before reaching its point: everything left is cached, further kills would test nothing.
            resumed += after_kill
            after_kill = False
            print(f"run finished before reaching {aim:.1f}/{plan.total:.0f}; stopping with {kills} kills", flush=True)
            break
        if after_kill:
            run_to_end(config, broken, env, log)
            resumed += 1
        weights = "run/final/model.safetensors"
        identical = weights_identical(unbroken / weights, broken / weights)
        print(f"total {time.monotonic() - started:.0f}s; work folder {work}", flush=True)
        print(f"kills={kills} resumed={resumed} identical={'yes' if identical else 'no'}", flush=True)
        if kills < args.kills:
            raise SystemExit(f"only {kills} of {args.kills} kills landed: the run has too few progress points "
                             f"(finished steps, iterations, checkpoints) to tell apart; ask for fewer --kills")
        if not identical:
            raise SystemExit(f"the resumed run's final weights differ from the unbroken run's ({weights}): exact "
                             f"resume is broken; rerun with --keep and compare the two run folders in {work}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
