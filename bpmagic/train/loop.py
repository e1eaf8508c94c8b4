"""The training loop, once: batching, stepping, recording, validating, publishing and ending, as a generator that
yields at every step boundary. Drivers (train/drivers.py) run it in a worker thread, inline or as an asyncio task.

What it yields tells the driver what to do next: 0 after a step (go on when you like), a number of seconds (the pace
wants that long before the next step; a control change may cut it short), or None (paused: nothing to do until a
control changes). Whatever ends the run — the last step, Stop, an interrupt, an error, a NaN — ends it at a step
boundary, so the parameters are always those of the last completed step; Reset starts it over from the same
boundary.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from ..errors import NonFiniteError
from .checkpoint import Position
from .controls import PAUSED, RESET, STOP

#: at most this often the run's listeners (the dashboard) hear of it while it trains
PUBLISH_EVERY = 0.1


@dataclass
class Job:
    """What a run trains on and for how long."""

    data: list  # arrays on the step's backend, batched along axis 0
    batch_size: int
    total_steps: int | None  # None: until stopped
    seed: int  # the data's order in every epoch comes from it
    validation: list | None = None
    shard: tuple | None = None  # (rank, workers): this worker trains on its part of every global batch
    start: Position | None = None  # resumed from a checkpoint: where the first attempt starts

    @property
    def examples(self) -> int:
        return int(self.data[0].shape[0])

    @property
    def per_epoch(self) -> int:
        return math.ceil(self.examples / self.batch_size)

    @property
    def epochs(self) -> int | None:
        return None if self.total_steps is None else math.ceil(self.total_steps / self.per_epoch)

    def part(self, order, i: int) -> tuple:
        """(this worker's part of global batch `i`, its share of that batch): the batch split in consecutive, nearly
        equal parts in rank order, so that the workers together see exactly what one process would. A worker whose
        part is empty (a last batch smaller than the workers) takes one example weighted 0."""
        rank, workers = self.shard
        lo = i * self.batch_size
        m = min(lo + self.batch_size, self.examples) - lo
        base, extra = divmod(m, workers)
        start, count = lo + rank * base + min(rank, extra), base + (rank < extra)
        weight = count / m
        if count == 0:
            start, count = lo, 1
        rows = slice(start, start + count) if order is None else order[start:start + count]
        return [d[rows] for d in self.data], weight


def training_loop(run, job: Job):
    """The whole run, from its first step to its end, with a fresh start at every Reset."""
    try:
        while True:
            ended = yield from _attempt(run, job)
            if ended != RESET:
                break
            run._start_over()
    except NonFiniteError as e:
        run._end("failed", "non-finite", e)
    except Exception as e:  # ends training; the message is shown by whoever waits
        run._end("failed", "error", e)
    except BaseException:  # the driver gave up on the loop (the kernel interrupted a cell that drove it)
        run._end("interrupted", "interrupted")
        raise
    else:
        run._end(*ended)


def _attempt(run, job: Job):
    """One pass through the job's steps; returns how it ended: (status, reason) or RESET."""
    step, controls = run.step, run.controls
    xp = step.backend.xp
    n, bs = job.examples, job.batch_size
    total = math.inf if job.total_steps is None else job.total_steps
    rng = np.random.default_rng(job.seed)
    done, epoch, first, last_publish = 0, 0, 0, float("-inf")
    t0 = time.perf_counter()
    if job.start is not None:  # resumed: the same batches from where the checkpoint was saved
        done, epoch, first = job.start.steps, job.start.epoch, job.start.batch
        rng.bit_generator.state = job.start.order_from
        t0 -= (run.history.get("time") or [0.0])[-1]
    saving = run.checkpointing
    while done < total:
        order_from = rng.bit_generator.state
        order = None if bs == n else xp.asarray(rng.permutation(n))
        for i in range(first, job.per_epoch):
            if done >= total:
                break
            while (action := controls.next_action()) != 0:
                if action == STOP:
                    reason = controls.stop_reason
                    return ("interrupted" if reason == "interrupted" else "stopped"), reason
                if action == RESET:
                    return RESET
                yield None if action == PAUSED else action
            if job.shard is not None:  # a worker of a data-parallel run (train/workers.py)
                batch, step.shard_weight = job.part(order, i)
            else:
                batch = job.data if order is None else [d[order[i * bs:(i + 1) * bs]] for d in job.data]
            loss = step(*batch)
            done += 1
            run._record(step, epoch, loss, time.perf_counter() - t0)
            now = time.perf_counter()
            if controls.paused or now - last_publish > PUBLISH_EVERY:  # paused: show the step it stopped at
                last_publish = now
                run._publish()  # with the statistics fetched from the step's device since the last time
            elif step.measurements.pending >= step.measurements.CAPACITY // 2:  # thousands of steps a second
                run._catch_up()
            run.position = Position(done, epoch, i + 1, order_from)
            if saving is not None and i + 1 < job.per_epoch and saving.due(done):
                saving.write(run, run.position)
            yield 0
        if job.validation is not None:
            run._validate(job.validation)
        if run._epoch_ended(epoch):
            return "stopped", "early-stopped"
        epoch, first = epoch + 1, 0
        run.position = Position(done, epoch, 0, rng.bit_generator.state)
        if saving is not None and saving.due(done):
            saving.write(run, run.position)
    return "finished", "finished"
