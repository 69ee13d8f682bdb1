"""The daemon's interval jobs on pools of worker threads: what the daemon used of APScheduler's BackgroundScheduler,
in a page of its own (issue 19: APScheduler brought asyncio, ssl, multiprocessing, pickle and tzlocal into the
daemon, about 4 MB of its memory, for a handful of interval jobs).

A job runs every ``interval`` seconds on one pool's workers:

- **On a grid.** Its runs are due at ``first, first + interval, first + 2 interval, ...``, measured on the monotonic
  clock (a wall clock set at NTP sync moves no job).
- **One instance at a time.** A run that comes due while the previous one still runs (or waits for a worker) is
  skipped, said in the log, and the job is due again at its next time on the grid.
- **Coalesced.** Runs missed meanwhile (the scheduler held up, the machine suspended) make one run, never a burst.
- **Late rather than skipped, within its grace.** A run that waits for a worker still runs when it starts at most
  ``grace`` seconds after its time; later than that it is skipped (said in the log) and the job runs at its next time.
- **Pools keep jobs apart.** Each pool has its own workers (started as they are needed, at most ``workers``), so a job
  of one pool never waits for another pool's: the daemon gives sampling a worker per interval group, the watchdog one
  of its own, and housekeeping a few to share.

A job that raises is logged with its traceback and runs again at its next time. ``shutdown(wait=True)`` stops handing
out runs and waits for the runs already handed out, so a sampling round in progress finishes and commits.

The timing is in :meth:`Scheduler.tick` (hand out what is due at ``now``; return when the next run is due), so tests
drive it with their own clock; :meth:`Scheduler.start` runs it on a thread of its own on the real monotonic clock.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

#: Seconds a run may start late (waiting for a worker) and still run: APScheduler's default, kept.
DEFAULT_GRACE = 1.0


@dataclass(eq=False)
class Job:
    """One interval job. ``next_run`` is the monotonic time its next run is due."""

    id: str
    func: Callable[..., object]
    interval: float
    pool: str
    grace: float
    args: tuple = ()
    next_run: float = 0.0
    busy: bool = field(default=False, repr=False)  # a run is handed out: queued or running
    removed: bool = field(default=False, repr=False)


class _Pool:
    """Workers for one pool: a thread is started when a run finds no idle one, up to ``workers``; beyond that a run
    waits for the first worker to finish. They end at shutdown, after the runs already handed to them."""

    def __init__(self, name: str, workers: int, run: Callable[[Job, float], None]):
        if workers < 1:
            raise ValueError(f"pool {name!r}: workers must be at least 1, not {workers}")
        self.name = name
        self.workers = workers
        self._run = run
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._idle = 0  # workers waiting on the queue with no run promised to them
        self._waiting = 0  # runs in the queue that no idle worker was promised (all workers were busy)

    def submit(self, job: Job, due: float) -> None:
        with self._lock:
            if self._idle:
                self._idle -= 1  # promised to a waiting worker
            elif len(self._threads) < self.workers:
                thread = threading.Thread(target=self._work, args=((job, due),), daemon=True,
                                          name=f"{self.name}-{len(self._threads)}")
                self._threads.append(thread)
                thread.start()
                return
            else:
                self._waiting += 1  # the next worker to finish takes it
            self._queue.put((job, due))

    def _work(self, item) -> None:
        while item is not None:
            self._run(*item)
            with self._lock:
                if self._waiting:
                    self._waiting -= 1
                else:
                    self._idle += 1
            item = self._queue.get()

    def shutdown(self, wait: bool) -> None:
        with self._lock:
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(None)  # after the runs already queued
        if wait:
            for thread in threads:
                if thread is not threading.current_thread():
                    thread.join()


class Scheduler:
    """Interval jobs on named pools of workers; ``pools`` maps a pool's name to its number of workers at most."""

    def __init__(self, pools: dict[str, int], clock: Callable[[], float] = time.monotonic,
                 name: str = "scheduler"):
        self.clock = clock
        self.name = name
        self._pools = {pool: _Pool(pool, workers, self._run) for pool, workers in pools.items()}
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()  # guards _jobs and each job's next_run, busy, removed
        self._changed = threading.Event()  # a job was added or removed, or the scheduler is stopping
        self._stopping = False
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------------------------------ jobs

    def add(self, func: Callable[..., object], interval: float, *, id: str, pool: str, first: float | None = None,
            grace: float = DEFAULT_GRACE, args: tuple = ()) -> Job:
        """Run ``func(*args)`` every ``interval`` seconds on ``pool``'s workers, the first time ``first`` seconds
        from now (default: one interval from now)."""
        if not interval > 0 or math.isinf(interval):
            raise ValueError(f"job {id!r}: interval must be a positive number of seconds, not {interval!r}")
        if pool not in self._pools:
            raise ValueError(f"job {id!r}: no pool {pool!r} (pools: {', '.join(sorted(self._pools))})")
        if grace < 0:
            raise ValueError(f"job {id!r}: grace must be 0 or more seconds, not {grace!r}")
        job = Job(id, func, float(interval), pool, float(grace), tuple(args),
                  next_run=self.clock() + (interval if first is None else max(0.0, first)))
        with self._lock:
            if id in self._jobs:
                raise ValueError(f"job {id!r} is already scheduled")
            self._jobs[id] = job
        self._changed.set()
        return job

    def remove(self, job_id: str) -> bool:
        """No more runs of that job (a run in progress finishes); False when there is no such job."""
        with self._lock:
            job = self._jobs.pop(job_id, None)
            if job is not None:
                job.removed = True
        self._changed.set()
        return job is not None

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def jobs(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())

    # ---------------------------------------------------------------------------------------------- timing

    def tick(self, now: float) -> float | None:
        """Hand out every run due at ``now``; return when the next run is due (None: no job)."""
        handed: list[tuple[Job, float]] = []
        with self._lock:
            if self._stopping:
                return None
            for job in self._jobs.values():
                if job.next_run > now:
                    continue
                due = job.next_run + math.floor((now - job.next_run) / job.interval) * job.interval  # coalesced
                job.next_run = due + job.interval
                if job.busy:
                    log.warning("%s: not run at its time, its previous run has not finished; next in %.3gs",
                                job.id, job.next_run - now)
                    continue
                job.busy = True
                handed.append((job, due))
            upcoming = min((job.next_run for job in self._jobs.values()), default=None)
        for job, due in handed:
            self._pools[job.pool].submit(job, due)
        return upcoming

    def _run(self, job: Job, due: float) -> None:
        """On a worker: the run, unless it starts more than its grace late or its job was removed."""
        try:
            if job.removed:
                return
            late = self.clock() - due
            if late > job.grace:
                log.warning("%s: skipped a run that started %.3gs late (more than its %gs of grace)",
                            job.id, late, job.grace)
                return
            try:
                job.func(*job.args)
            except Exception:  # never the end of the job: it runs again at its next time
                log.exception("%s failed; it runs again at its next time", job.id)
        finally:
            with self._lock:
                job.busy = False

    # ------------------------------------------------------------------------------------------- lifecycle

    @property
    def running(self) -> bool:
        """Started and not shut down (even if its thread died: a shutdown still waits for the runs handed out)."""
        return self._thread is not None and not self._stopping

    def start(self) -> None:
        """Hand out runs on a thread of its own (``scheduler``) on this scheduler's clock."""
        if self._thread is not None:
            raise RuntimeError("the scheduler is already started")
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            self._changed.clear()
            upcoming = self.tick(self.clock())
            if self._stopping:
                return
            wait = None if upcoming is None else max(0.0, upcoming - self.clock())
            self._changed.wait(wait)

    def shutdown(self, wait: bool = True) -> None:
        """Hand out no more runs; with ``wait``, return once the runs already handed out have finished."""
        with self._lock:
            self._stopping = True
        self._changed.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        for pool in self._pools.values():
            pool.shutdown(wait)
