"""The daemon's scheduler (edge/gateway/scheduler.py): interval jobs on a grid, one instance at a time, coalesced,
late within their grace rather than skipped, each pool with its own workers. Timing is driven by ``tick(now)`` on a
clock the test moves; the workers are real threads, and ``shutdown(wait=True)`` is where a test knows every run handed
out has finished."""

from __future__ import annotations

import logging
import threading

import pytest

from conftest import wait_until
from edge.gateway.scheduler import Scheduler

WAIT = 10.0  # seconds a test waits for a worker thread at most (a loaded machine); never the expected path


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    """A job noting the clock's time at each run; ``hold`` keeps a run going until released."""

    def __init__(self, clock: Clock, hold: bool = False) -> None:
        self.clock = clock
        self.runs: list[float] = []
        self.threads: list[str] = []
        self.started = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()

    def __call__(self) -> None:
        self.runs.append(self.clock())
        self.threads.append(threading.current_thread().name)
        self.started.set()
        assert self.release.wait(WAIT)


def make(pools: dict[str, int] | None = None) -> tuple[Scheduler, Clock]:
    clock = Clock()
    return Scheduler(pools or {"p": 1}, clock=clock), clock


def test_a_job_runs_on_its_grid_from_its_first_time():
    scheduler, clock = make()
    job = Recorder(clock)
    entry = scheduler.add(job, 10, id="j", pool="p", first=0)
    assert scheduler.tick(0) == 10
    assert job.started.wait(WAIT)
    wait_until(lambda: not entry.busy, WAIT, "the first run to end")  # or the run at 10.5 is skipped, still busy
    clock.now = 4
    assert scheduler.tick(4) == 10  # not due yet
    clock.now = 10.5
    assert scheduler.tick(10.5) == 20  # on the grid, not 10.5 + 10
    scheduler.shutdown()
    assert job.runs == [0, 10.5]


def test_a_job_without_a_first_time_runs_one_interval_after_it_was_added():
    scheduler, clock = make()
    clock.now = 100
    job = Recorder(clock)
    scheduler.add(job, 30, id="j", pool="p")
    assert scheduler.tick(100) == 130
    clock.now = 130
    scheduler.tick(130)
    scheduler.shutdown()
    assert job.runs == [130]


def test_runs_missed_meanwhile_make_one_run_not_a_burst():
    scheduler, clock = make()
    job = Recorder(clock)
    scheduler.add(job, 10, id="j", pool="p", first=0, grace=100)
    clock.now = 35  # the scheduler was held up past three runs
    assert scheduler.tick(35) == 40  # one run (due at 30), and the grid goes on
    scheduler.shutdown()
    assert job.runs == [35]


def test_a_run_due_while_the_previous_one_runs_is_skipped_not_queued(caplog):
    scheduler, clock = make({"p": 2})
    job = Recorder(clock, hold=True)
    scheduler.add(job, 10, id="slow", pool="p", first=0)
    scheduler.tick(0)
    assert job.started.wait(WAIT)
    clock.now = 10
    with caplog.at_level(logging.WARNING, logger="edge.gateway.scheduler"):
        assert scheduler.tick(10) == 20  # a free worker, but one instance at a time
    assert "slow: not run at its time, its previous run has not finished" in caplog.text
    job.release.set()
    scheduler.shutdown()
    assert job.runs == [0]


def test_a_run_waiting_for_a_worker_runs_late_within_its_grace():
    scheduler, clock = make({"p": 1})
    busy, waiting = Recorder(clock, hold=True), Recorder(clock)
    scheduler.add(busy, 60, id="busy", pool="p", first=0)
    scheduler.add(waiting, 60, id="waiting", pool="p", first=0, grace=2)
    scheduler.tick(0)
    assert busy.started.wait(WAIT)
    clock.now = 1.5  # the one worker frees up 1.5 s late: within the 2 s grace
    busy.release.set()
    scheduler.shutdown()
    assert waiting.runs == [1.5]


def test_a_run_that_would_start_past_its_grace_is_skipped_and_said(caplog):
    scheduler, clock = make({"p": 1})
    busy, waiting = Recorder(clock, hold=True), Recorder(clock)
    scheduler.add(busy, 60, id="busy", pool="p", first=0)
    scheduler.add(waiting, 60, id="waiting", pool="p", first=0, grace=2)
    scheduler.tick(0)
    assert busy.started.wait(WAIT)
    clock.now = 5
    with caplog.at_level(logging.WARNING, logger="edge.gateway.scheduler"):
        busy.release.set()
        scheduler.shutdown()
    assert waiting.runs == []
    assert "waiting: skipped a run that started 5s late (more than its 2s of grace)" in caplog.text


def test_a_job_of_one_pool_never_waits_for_another_pools_workers():
    scheduler, clock = make({"housekeeping": 1, "watchdog": 1})
    wedged, watchdog = Recorder(clock, hold=True), Recorder(clock)
    scheduler.add(wedged, 60, id="budget", pool="housekeeping", first=0)
    scheduler.add(watchdog, 30, id="watchdog", pool="watchdog", first=0)
    scheduler.tick(0)
    assert wedged.started.wait(WAIT)
    assert watchdog.started.wait(WAIT)  # while housekeeping's only worker is held
    wedged.release.set()
    scheduler.shutdown()


def test_a_pool_starts_workers_as_runs_need_them_and_no_more_than_its_size():
    scheduler, clock = make({"sampling": 3})
    jobs = [Recorder(clock, hold=True) for _ in range(4)]
    for n, job in enumerate(jobs):
        scheduler.add(job, 10, id=f"j{n}", pool="sampling", first=0, grace=100)
    scheduler.tick(0)
    for job in jobs[:3]:
        assert job.started.wait(WAIT)  # three at once, each on a worker of its own
    assert not jobs[3].started.is_set()  # the fourth waits for a worker
    names = {t.name for t in threading.enumerate() if t.name.startswith("sampling-")}
    assert names == {"sampling-0", "sampling-1", "sampling-2"}
    jobs[0].release.set()
    assert jobs[3].started.wait(WAIT)
    assert jobs[3].threads == jobs[0].threads  # on the worker the first run freed, not a fourth
    for job in jobs:
        job.release.set()
    scheduler.shutdown()
    assert [len(job.runs) for job in jobs] == [1, 1, 1, 1]


def test_a_job_that_raises_is_logged_and_runs_again_at_its_next_time(caplog):
    scheduler, clock = make({"p": 1})
    runs = []

    def failing():
        runs.append(clock())
        raise RuntimeError("sensor bus gone")

    after = Recorder(clock)  # on the same one worker: once it runs, the failed run is over
    scheduler.add(failing, 5, id="flaky", pool="p", first=0)
    scheduler.add(after, 60, id="after", pool="p", first=0)
    with caplog.at_level(logging.ERROR, logger="edge.gateway.scheduler"):
        scheduler.tick(0)
        assert after.started.wait(WAIT)
        clock.now = 5
        scheduler.tick(5)
        scheduler.shutdown()
    assert runs == [0, 5]
    assert "flaky failed; it runs again at its next time" in caplog.text and "sensor bus gone" in caplog.text


def test_a_removed_job_runs_no_more_and_its_waiting_run_is_dropped():
    scheduler, clock = make({"p": 1})
    busy, watchdog = Recorder(clock, hold=True), Recorder(clock)
    scheduler.add(busy, 60, id="busy", pool="p", first=0)
    scheduler.add(watchdog, 60, id="watchdog", pool="p", first=0)
    scheduler.tick(0)  # the watchdog's run waits for the one worker
    assert busy.started.wait(WAIT)
    assert scheduler.remove("watchdog") and not scheduler.remove("watchdog")
    assert [job.id for job in scheduler.jobs()] == ["busy"] and scheduler.get("watchdog") is None
    busy.release.set()
    clock.now = 60
    scheduler.tick(60)
    scheduler.shutdown()
    assert watchdog.runs == []


def test_shutdown_waits_for_the_run_in_progress_and_hands_out_no_more():
    scheduler = Scheduler({"p": 1})  # the real clock and the scheduler's own thread
    round_ = Recorder(Clock(), hold=True)
    scheduler.add(round_, 0.01, id="round", pool="p", first=0)
    scheduler.start()
    assert round_.started.wait(WAIT)
    stopper = threading.Thread(target=scheduler.shutdown)
    stopper.start()
    stopper.join(0.1)
    assert stopper.is_alive()  # still waiting for the round in progress
    round_.release.set()
    stopper.join(WAIT)
    assert not stopper.is_alive() and not scheduler.running
    assert len(round_.runs) == 1


def test_the_scheduler_thread_runs_jobs_on_the_real_clock():
    scheduler = Scheduler({"p": 1})
    done = threading.Event()
    runs = []

    def tick():
        runs.append(1)
        if len(runs) == 3:
            done.set()

    scheduler.add(tick, 0.02, id="fast", pool="p", first=0)
    scheduler.start()
    assert scheduler.running
    try:
        assert done.wait(WAIT)
    finally:
        scheduler.shutdown()
    assert {t.name for t in threading.enumerate()} & {"scheduler", "p-0"} == set()


@pytest.mark.parametrize("args, message", [
    ((0,), "job 'j': interval must be a positive number of seconds, not 0"),
    ((float("inf"),), "job 'j': interval must be a positive number of seconds, not inf"),
    ((5,), "job 'j': no pool 'nope' (pools: p)"),
])
def test_a_bad_job_is_refused_with_what_is_wrong(args, message):
    scheduler, _ = make()
    pool = "nope" if "no pool" in message else "p"
    with pytest.raises(ValueError) as raised:
        scheduler.add(lambda: None, *args, id="j", pool=pool)
    assert str(raised.value) == message
    assert scheduler.jobs() == []


def test_a_job_id_is_scheduled_once():
    scheduler, _ = make()
    scheduler.add(lambda: None, 5, id="j", pool="p")
    with pytest.raises(ValueError, match="job 'j' is already scheduled"):
        scheduler.add(lambda: None, 5, id="j", pool="p")
    assert len(scheduler.jobs()) == 1
