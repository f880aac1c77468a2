"""The relaunch rules of :mod:`etl_assets.resume` on plain values: leases and lost requests."""

from datetime import datetime, timedelta, timezone

from etl_assets.checkpoints import RunRecord, RunStatus
from etl_assets.resume import Action, DagsterRunInfo, ResumePolicy, holder, operator_reset, plan

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)
CHECKPOINT = {"skip": 10, "page_index": 1, "total_records": 10, "last_checkpoint_time": NOW.isoformat()}


class Runs:
    def __init__(self, by_id=None, by_key=None, relaunching=None):
        self.ids = by_id or {}
        self.keys = by_key or {}
        self.relaunching = relaunching or {}

    def active_relaunch(self, run_id, extract):
        return self.relaunching.get((run_id, extract))

    def by_id(self, dagster_run_id):
        return self.ids.get(dagster_run_id)

    def by_resume_key(self, resume_key):
        return self.keys.get(resume_key)


def row(*, status=RunStatus.RUNNING, owner="gone", written=NOW - timedelta(hours=1), resume=None):
    context = {"checkpoint": CHECKPOINT, "parameters": {}}
    if resume is not None:
        context["resume"] = resume
    return RunRecord(
        run_id=7, job_name="items", status=status, started_at=NOW - timedelta(hours=2), updated_at=written,
        finished_at=None, records_loaded=10, error_message=None, dagster_run_id=owner, run_context=context,
    )


def test_a_run_unknown_to_the_instance_holds_the_row_for_its_lease_only():
    policy = ResumePolicy(lease_seconds=600)
    fresh = row(written=NOW - timedelta(seconds=30))
    assert holder(fresh, Runs(), 600, NOW) == (
        "run gone, unknown to this Dagster instance, wrote it 30 s ago (its lease ends after 600 s without a write)"
    )
    assert plan(fresh, Runs(), policy, NOW).action is Action.WAIT
    stale = row(written=NOW - timedelta(seconds=601))
    assert holder(stale, Runs(), 600, NOW) is None
    decision = plan(stale, Runs(), policy, NOW)
    assert (decision.action, decision.resume_key, decision.attempt) == (Action.LAUNCH, "resume-7-1", 1)


def test_a_known_run_holds_while_in_progress_and_its_lease_is_fresh():
    live = Runs(by_id={"gone": DagsterRunInfo("gone", "STARTED", True)})
    assert holder(row(written=NOW - timedelta(seconds=30)), live, 600, NOW) == "Dagster run gone (STARTED)"
    # A SIGKILLed worker's run can stay STARTED with nothing to notice: once it has stopped
    # renewing its lease (pages and heartbeat), the row is free again.
    assert holder(row(written=NOW - timedelta(seconds=601)), live, 600, NOW) is None
    ended = Runs(by_id={"gone": DagsterRunInfo("gone", "FAILURE", False)})
    assert holder(row(written=NOW), ended, 600, NOW) is None
    assert holder(row(status=RunStatus.FAILED, written=NOW), Runs(), 600, NOW) is None


def test_a_requested_relaunch_that_never_starts_counts_after_the_grace_period():
    policy = ResumePolicy(max_attempts=2, backoff_seconds=0, request_grace_seconds=300)
    state = {"requested": 1, "last_resume_key": "resume-7-1", "last_skip": 10, "without_progress": 1,
             "last_requested_at": (NOW - timedelta(seconds=299)).isoformat(),
             "history": [{"attempt": 1, "resume_key": "resume-7-1"}]}
    waiting = plan(row(resume=state), Runs(), policy, NOW)
    assert (waiting.action, waiting.reason) == (Action.WAIT, "relaunch resume-7-1 was requested and has not started yet")
    state["last_requested_at"] = (NOW - timedelta(seconds=301)).isoformat()
    given_up = plan(row(resume=state), Runs(), policy, NOW)
    assert given_up.action is Action.GIVE_UP
    assert given_up.reason.startswith("gave up after 2 relaunches in a row without progress "
                                      "(ETL_MAX_RESUME_ATTEMPTS=2); last one: never started;")
    assert given_up.run_context["resume"]["history"] == [
        {"attempt": 1, "resume_key": "resume-7-1", "dagster_run_id": None, "ended": "never started", "reached_skip": 10}
    ]


def test_backoff_doubles_and_is_capped():
    policy = ResumePolicy(backoff_seconds=30)
    assert [policy.backoff(n) for n in range(0, 5)] == [0.0, 30.0, 60.0, 120.0, 240.0]
    assert policy.backoff(20) == 3600.0


def test_an_operator_retry_gives_a_fresh_budget():
    context = {"checkpoint": CHECKPOINT, "resume": {"exhausted": True, "without_progress": 5, "requested": 5,
                                                     "last_resume_key": "resume-7-5"}}
    assert operator_reset(context)["resume"] == {"exhausted": False, "without_progress": 0, "requested": 5,
                                                 "last_resume_key": None}
    assert plan(row(resume={"exhausted": True}), Runs(), ResumePolicy(), NOW).action is Action.SKIP
    assert plan(row(), Runs(), ResumePolicy(max_attempts=0), NOW).reason == (
        "automatic relaunches are off (ETL_MAX_RESUME_ATTEMPTS=0)"
    )


def test_resume_state_times_are_stored_in_utc_whatever_zone_the_clock_gives():
    tokyo = NOW.astimezone(timezone(timedelta(hours=9)))  # the same instant, 21:00 in Tokyo
    decision = plan(row(), Runs(), ResumePolicy(), tokyo)
    state = decision.run_context["resume"]
    assert state["last_requested_at"] == "2026-12-03T12:00:00+00:00"
    assert [entry["requested_at"] for entry in state["history"]] == ["2026-12-03T12:00:00+00:00"]


def test_the_backoff_deadline_is_said_in_utc_and_a_time_without_offset_is_read_as_utc():
    policy = ResumePolicy(backoff_seconds=1800)
    ended = Runs(by_key={"resume-7-1": DagsterRunInfo("r1", "FAILURE", False)})
    for written in ("2026-12-03T11:50:00+00:00", "2026-12-03T20:50:00+09:00", "2026-12-03T11:50:00"):
        state = {"requested": 1, "last_resume_key": "resume-7-1", "last_skip": 10, "without_progress": 0,
                 "last_requested_at": written}
        decision = plan(row(resume=state), ended, policy, NOW)
        assert (decision.action, decision.reason) == (
            Action.WAIT, "backing off after 1 relaunches without progress, next at 2026-12-03T12:20:00+00:00"
        )


def test_a_relaunch_an_operator_launched_is_waited_for_not_launched_again():
    """A retry from the API or CLI, queued behind the daemon, holds nothing yet: the sensor
    must not launch a second run that would only fail against it."""
    queued = DagsterRunInfo(run_id="dfabd8b5", status="QUEUED", active=True)
    decision = plan(row(resume=operator_reset({})["resume"]), Runs(relaunching={(7, "items"): queued}), ResumePolicy(), NOW)
    assert (decision.action, decision.reason) == (Action.WAIT, "Dagster run dfabd8b5 (QUEUED) was launched to resume it")
    assert plan(row(), Runs(), ResumePolicy(backoff_seconds=0), NOW).action is Action.LAUNCH
