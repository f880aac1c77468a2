"""What to do with an interrupted ``dw_etl_runs`` row: relaunch it now, wait, or give up.

The rules live here, free of Dagster, so the sensor stays a thin loop and every rule can be
tested with plain values. The sensor's memory is the row itself (``run_context["resume"]``),
not a sensor cursor: it survives a daemon restart, it is visible to operators next to the
checkpoint, and the API and CLI read the same history.

Attempts are counted only while they make no progress. A long extract that hits its time
budget ten times, each time a little further, is working as designed and is relaunched every
time; a run that fails at the same checkpoint again and again is given up after
``max_attempts`` relaunches, with delays that double in between.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from typing import Any, Protocol

from etl_assets.checkpoints.models import RunRecord, RunStatus

RESUME_KEY = "resume"
HISTORY_KEPT = 20
MAX_BACKOFF_SECONDS = 3600.0
RESUME_TAG = "etl_assets/resume_of"
EXTRACT_TAG = "etl_assets/extract"
"""Set with :data:`RESUME_TAG` on every relaunch: row ids count per warehouse, so a run id alone
matches rows of other extracts whose runs share the Dagster instance."""
RESUME_KEY_TAG = "etl_assets/resume_key"


@dataclass(frozen=True)
class DagsterRunInfo:
    """What the instance says about one Dagster run."""

    run_id: str
    status: str
    active: bool


class RunLookup(Protocol):
    """Reads Dagster run states (the sensor passes the instance, tests whatever they need)."""

    def by_id(self, dagster_run_id: str) -> DagsterRunInfo | None: ...

    def by_resume_key(self, resume_key: str) -> DagsterRunInfo | None: ...

    def active_relaunch(self, run_id: int, extract: str) -> DagsterRunInfo | None:
        """A Dagster run launched to resume ``dw_etl_runs`` row ``run_id`` of ``extract`` that
        has not ended (queued or starting: it does not hold the row yet)."""
        ...


class _NoRuns:
    """No Dagster instance to ask (a plain Python call): runs are judged by their lease."""

    def by_id(self, dagster_run_id: str) -> DagsterRunInfo | None:
        return None

    def by_resume_key(self, resume_key: str) -> DagsterRunInfo | None:
        return None

    def active_relaunch(self, run_id: int, extract: str) -> DagsterRunInfo | None:
        return None


NO_RUNS = _NoRuns()


@dataclass(frozen=True)
class ResumePolicy:
    max_attempts: int = 5
    backoff_seconds: float = 30.0
    lease_seconds: float = 600.0
    request_grace_seconds: float = 300.0
    """A requested relaunch that no Dagster run carries after this long counts as lost."""

    def backoff(self, without_progress: int) -> float:
        """No delay after a run that made progress; then base, 2x base, 4x base, ..."""
        if without_progress <= 0:
            return 0.0
        return min(MAX_BACKOFF_SECONDS, self.backoff_seconds * 2 ** (without_progress - 1))


class Action(StrEnum):
    LAUNCH = "launch"
    WAIT = "wait"
    GIVE_UP = "give_up"
    SKIP = "skip"


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    run_context: dict[str, Any] | None = None
    """The row's new ``run_context`` for LAUNCH and GIVE_UP, written before anything launches."""
    resume_key: str | None = None
    attempt: int | None = None


def holder(row: RunRecord, lookup: RunLookup, lease_seconds: float, now: datetime) -> str | None:
    """Why ``row`` is still held by a live run, or ``None`` when nobody holds it.

    A run that recorded its own end in the row (a timeout) holds nothing. A run the instance
    knows holds it while its Dagster status is in progress, and any run holds it only until
    ``lease_seconds`` after the row's last write: every page and a heartbeat write it, so a live
    run keeps its lease and a dead one loses it, even one whose Dagster run still says STARTED.
    """
    owner = row.dagster_run_id
    if row.status is not RunStatus.RUNNING or not owner:
        return None
    attempts = [a for a in row.run_context.get("attempts") or [] if a.get("dagster_run_id") == owner]
    if attempts and attempts[-1].get("ended_at"):
        return None  # the run itself recorded that it stopped (a timeout)
    info = lookup.by_id(owner)
    age = (now - row.updated_at).total_seconds()
    if info is not None:
        # A live run renews its lease (pages and a heartbeat); a worker killed outright can
        # leave its Dagster run STARTED for as long as nothing monitors it, so the lease wins.
        return f"Dagster run {owner} ({info.status})" if info.active and age < lease_seconds else None
    if age < lease_seconds:
        return (
            f"run {owner}, unknown to this Dagster instance, wrote it {age:.0f} s ago "
            f"(its lease ends after {lease_seconds:.0f} s without a write)"
        )
    return None


def resume_state(run_context: Mapping[str, Any]) -> dict[str, Any]:
    return dict(run_context.get(RESUME_KEY) or {})


def _instant(text: str) -> datetime:
    """A time read back from ``run_context``. This module writes them in UTC with their offset;
    one without an offset (edited by hand) is taken as UTC too, not left naive to make every
    later tick of the sensor fail on comparing it with an aware ``now``."""
    when = datetime.fromisoformat(text)
    return (when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


def plan(row: RunRecord, lookup: RunLookup, policy: ResumePolicy, now: datetime) -> Decision:
    """Decide for one row; raises only on a corrupt row (the sensor reports it and goes on)."""
    now = now.astimezone(timezone.utc)  # what is stored is UTC whatever zone the caller's clock is in
    checkpoint = row.checkpoint
    if row.status is RunStatus.SUCCESS or checkpoint is None:
        return Decision(Action.SKIP, "nothing to resume")
    state = resume_state(row.run_context)
    if state.get("exhausted"):
        return Decision(Action.SKIP, "given up earlier; retry it by hand")
    if policy.max_attempts == 0:
        return Decision(Action.SKIP, "automatic relaunches are off (ETL_MAX_RESUME_ATTEMPTS=0)")
    held = holder(row, lookup, policy.lease_seconds, now)
    if held:
        return Decision(Action.WAIT, f"held: {held}")
    if (queued := lookup.active_relaunch(row.run_id, row.job_name)) is not None:
        # Launched to resume the row (an operator's retry, or this sensor's own) and not
        # started yet: it holds nothing, and a second launch would only fail against it.
        return Decision(Action.WAIT, f"Dagster run {queued.run_id} ({queued.status}) was launched to resume it")

    history = [dict(entry) for entry in state.get("history") or []]
    without_progress = int(state.get("without_progress") or 0)
    last_outcome = "interrupted"
    last_key = state.get("last_resume_key")
    if last_key:
        info = lookup.by_resume_key(last_key)
        if info is not None and info.active:
            return Decision(Action.WAIT, f"relaunch {last_key} is Dagster run {info.run_id}, {info.status}")
        if info is None:
            requested_at = _instant(state["last_requested_at"])
            if now - requested_at < timedelta(seconds=policy.request_grace_seconds):
                return Decision(Action.WAIT, f"relaunch {last_key} was requested and has not started yet")
            last_outcome = "never started"
        else:
            last_outcome = _outcome(row, info)
        progress = checkpoint.skip - int(state.get("last_skip", -1))
        without_progress = 0 if progress > 0 else without_progress + 1
        if history and history[-1].get("resume_key") == last_key:
            history[-1].update(
                dagster_run_id=info.run_id if info else None,
                ended=last_outcome,
                reached_skip=checkpoint.skip,
            )
        state.update(last_resume_key=None, without_progress=without_progress)

    if without_progress >= policy.max_attempts:
        state.update(exhausted=True, history=history[-HISTORY_KEPT:])
        reason = (
            f"gave up after {without_progress} relaunches in a row without progress "
            f"(ETL_MAX_RESUME_ATTEMPTS={policy.max_attempts}); last one: {last_outcome}; "
            f"the checkpoint stays at skip={checkpoint.skip}; retry by hand with "
            f"`etl-assets runs retry {row.run_id}` once the cause is fixed"
        )
        return Decision(Action.GIVE_UP, reason, run_context={**row.run_context, RESUME_KEY: state})

    delay = policy.backoff(without_progress)
    if delay and state.get("last_requested_at"):
        due = _instant(state["last_requested_at"]) + timedelta(seconds=delay)
        if now < due:
            return Decision(Action.WAIT, f"backing off after {without_progress} relaunches without progress, "
                            f"next at {due.isoformat(timespec='seconds')}")

    attempt = int(state.get("requested") or 0) + 1
    key = f"resume-{row.run_id}-{attempt}"
    history.append(
        {"attempt": attempt, "resume_key": key, "requested_at": now.isoformat(), "from_skip": checkpoint.skip}
    )
    state.update(
        requested=attempt,
        without_progress=without_progress,
        last_resume_key=key,
        last_requested_at=now.isoformat(),
        last_skip=checkpoint.skip,
        history=history[-HISTORY_KEPT:],
    )
    return Decision(
        Action.LAUNCH,
        f"relaunch {attempt} from skip={checkpoint.skip} after: {last_outcome}",
        run_context={**row.run_context, RESUME_KEY: state},
        resume_key=key,
        attempt=attempt,
    )


def _outcome(row: RunRecord, info: DagsterRunInfo) -> str:
    """Why a relaunch ended: the attempt the extract recorded, else the Dagster status."""
    for attempt in reversed(row.run_context.get("attempts") or []):
        if attempt.get("dagster_run_id") == info.run_id:
            error = attempt.get("error")
            text = f"Dagster run {info.run_id} {info.status}: {attempt.get('outcome')}"
            return f"{text}: {error}" if error else text
    return f"Dagster run {info.run_id} {info.status} before it took the row"


def operator_reset(run_context: Mapping[str, Any]) -> dict[str, Any]:
    """A hand-made retry gives the sensor a fresh budget for this row."""
    state = resume_state(run_context)
    state.update(exhausted=False, without_progress=0, last_resume_key=None)
    return {**run_context, RESUME_KEY: state}
