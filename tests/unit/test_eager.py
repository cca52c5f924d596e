"""``_eager.first_step``/``Continued``: a coroutine run by hand until it first waits, then finished by a task,
behaves as if a task had run it from the start (results, exceptions, what it waits on, cancellation)."""

from __future__ import annotations

import asyncio

import pytest

from cloudisense.node._eager import Continued, first_step

pytestmark = pytest.mark.timeout(10)


async def _answers(x: int) -> int:
    return x * 2


async def _raises() -> None:
    raise ValueError("at once")


def test_a_coroutine_that_never_waits_is_finished_by_the_first_step():
    done, value = first_step(_answers(21))
    assert (done, value) == (True, 42)


def test_an_exception_of_the_first_step_is_raised_to_the_caller():
    with pytest.raises(ValueError, match="at once"):
        first_step(_raises())


async def test_a_waiting_coroutine_is_finished_by_a_task_with_what_it_waited_for():
    fut = asyncio.get_running_loop().create_future()
    trail: list[object] = []

    async def waits() -> str:
        trail.append("before")
        got = await fut                    # a future's result comes in
        trail.append(got)
        await asyncio.sleep(0)             # a bare yield too
        await asyncio.sleep(0.01)          # and a timer
        return f"after {got}"

    done, rest = first_step(waits())
    assert done is False and isinstance(rest, Continued) and trail == ["before"]
    task = asyncio.ensure_future(rest)
    await asyncio.sleep(0)
    assert not task.done()
    fut.set_result("it")
    assert await asyncio.wait_for(task, 2) == "after it" and trail == ["before", "it"]


async def test_an_exception_after_waiting_and_one_waited_for_reach_the_task():
    fut = asyncio.get_running_loop().create_future()

    async def waits() -> None:
        try:
            await fut
        except KeyError:
            raise RuntimeError("handled, then raised") from None

    _, rest = first_step(waits())
    task = asyncio.ensure_future(rest)
    await asyncio.sleep(0)
    fut.set_exception(KeyError("k"))
    with pytest.raises(RuntimeError, match="handled, then raised"):
        await asyncio.wait_for(task, 2)


async def test_cancelling_the_task_cancels_what_the_coroutine_waits_for_and_reaches_it():
    fut = asyncio.get_running_loop().create_future()
    cleaned: list[str] = []

    async def waits() -> None:
        try:
            await fut
        finally:
            cleaned.append("finally")

    _, rest = first_step(waits())
    task = asyncio.ensure_future(rest)
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert fut.cancelled() and cleaned == ["finally"]


async def test_a_coroutine_may_catch_the_cancellation_and_answer():
    async def stubborn() -> str:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            return "answered anyway"
        return "slept"

    _, rest = first_step(stubborn())
    task = asyncio.ensure_future(rest)
    await asyncio.sleep(0)
    task.cancel()
    assert await asyncio.wait_for(task, 2) == "answered anyway"
