"""node._deadlines.TaskDeadlines: local method runs are cancelled at their deadline, and only then."""

from __future__ import annotations

import asyncio

import pytest

from cloudisense.node._deadlines import TaskDeadlines

pytestmark = pytest.mark.timeout(30)


async def test_runs_past_their_deadline_are_cancelled_and_told_apart():
    d = TaskDeadlines()
    outcome: dict[str, str] = {}

    async def run(name: str, work: float, limit: float) -> None:
        task = asyncio.current_task()
        d.add(task, limit)
        try:
            await asyncio.sleep(work)
            outcome[name] = "done"
        except asyncio.CancelledError:
            if not d.finished(task):
                raise
            task.uncancel()
            outcome[name] = "timeout"
        finally:
            d.finished(task)

    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await asyncio.gather(run("fast", 0.01, 5.0), run("slow", 5.0, 0.2), run("slower", 5.0, 0.4),
                         run("edge", 0.05, 0.3))
    assert outcome == {"fast": "done", "slow": "timeout", "slower": "timeout", "edge": "done"}
    assert loop.time() - t0 < 2.0   # nobody waited for its 5 s of work
    d.close()


async def test_an_outside_cancel_is_not_taken_for_a_timeout():
    d = TaskDeadlines()
    seen: list[bool] = []

    async def run() -> None:
        task = asyncio.current_task()
        d.add(task, 10.0)
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            seen.append(d.finished(task))
            raise

    task = asyncio.create_task(run())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == [False]
    d.close()


async def test_the_heap_does_not_keep_finished_runs():
    d = TaskDeadlines()

    async def run() -> None:
        task = asyncio.current_task()
        d.add(task, 30.0)
        d.finished(task)

    await asyncio.gather(*(run() for _ in range(5000)))
    assert len(d._heap) <= 65
    d.close()


async def test_one_timer_serves_many_deadlines_earliest_first_and_rearms():
    """The timer the node drives pending remote calls with: due keys go to the owner in order, once."""
    from cloudisense.node._deadlines import DeadlineTimer, Deadlines

    live: dict[str, float] = {}
    heap = Deadlines(live)
    fired: list[str] = []
    got_all = asyncio.Event()

    def expire(now: float) -> None:
        for key, _ in heap.pop_due(now):
            live.pop(key, None)
            fired.append(key)
        if len(fired) == 2:
            got_all.set()

    timer = DeadlineTimer(heap.next, expire)
    loop = asyncio.get_running_loop()
    for key, t in (("late", 0.15), ("gone", 0.02), ("early", 0.05)):
        live[key] = t
        if heap.add(key, loop.time() + t):
            timer.arm(loop, loop.time() + t)
    del live["gone"]                 # answered before its deadline: never fires
    await asyncio.wait_for(got_all.wait(), 5)
    assert fired == ["early", "late"]
    live["never"] = 1.0
    heap.add("never", loop.time() + 0.05)
    timer.arm(loop, loop.time() + 0.05)
    timer.close()                    # closed: nothing fires any more
    await asyncio.sleep(0.1)
    assert fired == ["early", "late"]
