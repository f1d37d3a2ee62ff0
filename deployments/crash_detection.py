"""Mark a flow run Crashed when its process dies, so it can be retried (from the UI or `prefect flow-run retry`).

A flow run whose process is killed cannot report its own end: the server keeps showing it Running, and
Prefect refuses to retry a run that is not in a terminal state. Every running flow sends a heartbeat event
(PREFECT_FLOWS_HEARTBEAT_FREQUENCY seconds apart); this automation, Prefect's documented recipe for such
"zombie" runs, changes a run to Crashed once no heartbeat and no final state has arrived for `after_s`.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path
from typing import cast

if __name__ == "__main__":
    # `python deployments/crash_detection.py` puts deployments/ first on sys.path; the project root is needed too.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prefect.automations import Automation, ChangeFlowRunState, EventTrigger, MetricTrigger, Posture  # noqa: E402
from prefect.client.schemas.objects import StateType  # noqa: E402

from flows.environment import HEARTBEAT_S  # noqa: E402

AUTOMATION_NAME = "curriculum: mark flow runs without heartbeats as crashed"
# Ten minutes: more than three missed heartbeats even at Prefect's default interval (180 s), so a healthy run
# of this flow started some other way (with other settings) is never marked Crashed.
DEFAULT_AFTER_S = 600


def crash_automation(after_s: float) -> Automation:
    return Automation(
        name=AUTOMATION_NAME,
        description=f"A curriculum flow run with no heartbeat for {after_s:.0f}s lost its process: mark it "
        "Crashed so it can be retried; the retry resumes from the cache and the last checkpoint.",
        trigger=EventTrigger(
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={"prefect.resource.role": "flow", "prefect.resource.name": "curriculum"},
            after={"prefect.flow-run.heartbeat"},
            expect={
                "prefect.flow-run.heartbeat",
                "prefect.flow-run.Completed",
                "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled",
                "prefect.flow-run.Crashed",
            },
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=after_s),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=f"No heartbeat for {after_s:.0f}s: the process running this flow run died. Retry it to "
                "resume: finished stages come from the cache, the interrupted one from its last checkpoint.",
            )
        ],
    )


def ensure_crash_automation(after_s: float = DEFAULT_AFTER_S) -> Automation:
    """Create the automation, or replace an existing one of the same name whose window differs."""
    # Automation's methods return a coroutine when called inside an event loop (Prefect's async_dispatch), so
    # they are typed as either; this function is only called from synchronous code, where they return the result.
    wanted = crash_automation(after_s)
    try:
        existing = cast(Automation, Automation.read(name=AUTOMATION_NAME))
    except ValueError:  # Prefect's way of saying "no automation of that name"
        return cast(Automation, wanted.create())
    if _window(existing) == _window(wanted):
        return existing
    existing.delete()
    return cast(Automation, wanted.create())


def _window(automation: Automation) -> timedelta | None:
    """How long the trigger waits; None for a metric trigger, which has no window (an automation of this name
    made by hand, say: it is replaced)."""
    trigger = automation.trigger
    return None if isinstance(trigger, MetricTrigger) else trigger.within


def main(argv: list[str] | None = None) -> None:
    """`python deployments/crash_detection.py [--after SECONDS]`: install the automation (workers' route)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python deployments/crash_detection.py",
        description="Install the automation that marks curriculum runs without heartbeats as Crashed "
        "(deployments/serve.py installs it itself).",
    )
    parser.add_argument("--after", type=float, default=DEFAULT_AFTER_S, metavar="SECONDS",
                        help=f"seconds without a heartbeat (default {DEFAULT_AFTER_S:.0f}, at least {2 * HEARTBEAT_S})")
    args = parser.parse_args(argv)
    if args.after < 2 * HEARTBEAT_S:
        parser.error(f"--after must be at least {2 * HEARTBEAT_S} seconds (two heartbeats), got {args.after}")
    automation = ensure_crash_automation(args.after)
    print(f"automation {automation.name!r} active: runs without a heartbeat for {args.after:.0f}s become Crashed")


if __name__ == "__main__":
    main()
