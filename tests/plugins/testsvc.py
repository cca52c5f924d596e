"""A plug-in service used by the tests (loaded through the ``services`` config key)."""

import asyncio

from pydantic import BaseModel, Field

from cloudisense.node import Service, method


class SleepParams(BaseModel):
    seconds: float = Field(ge=0, le=60)


class Echo(BaseModel):
    value: object = None


class BoundedParams(BaseModel):
    seconds: float = Field(ge=0, le=60)
    limit: float = Field(gt=0, le=60)


class TestService(Service):
    name = "testsvc"
    description = "Test helpers: sleep, crash, echo, bounded, grouped."

    @method(mutates=False)
    async def sleep(self, p: SleepParams) -> Echo:
        """Sleep for a while, then answer."""
        await asyncio.sleep(p.seconds)
        return Echo(value=p.seconds)

    @method(mutates=False)
    async def crash(self) -> None:
        """Raise an exception (a bug), to show how bugs are answered."""
        raise RuntimeError("boom: secret internal detail")

    @method(mutates=True)
    async def echo(self, p: Echo) -> Echo:
        """Answer with the value given."""
        return p

    @method(mutates=False)
    async def bounded(self, p: BoundedParams) -> Echo:
        """Sleep within a timeout of its own (asyncio.timeout binds to the task it is entered in)."""
        try:
            async with asyncio.timeout(p.limit):
                await asyncio.sleep(p.seconds)
        except TimeoutError:
            return Echo(value="own timeout")
        return Echo(value="slept")

    @method(mutates=False)
    async def grouped(self, p: SleepParams) -> Echo:
        """Sleep in a TaskGroup of its own (its tasks belong to the task it is entered in)."""
        async with asyncio.TaskGroup() as tg:
            t = tg.create_task(asyncio.sleep(p.seconds, result=p.seconds))
        return Echo(value=t.result())


class RelayParams(BaseModel):
    node: str
    service_method: str
    params: dict = {}


class Counter(BaseModel):
    count: int


class RelayService(Service):
    """Programmatic RPC from a node's own code, and an observable side effect."""

    name = "relay"
    description = "Calls another node from this node's own code (node.call)."

    def __init__(self) -> None:
        super().__init__()
        self.bumps = 0

    @method(mutates=False)
    async def via(self, p: RelayParams) -> Echo:
        """Call service_method on node through this node's programmatic API."""
        return Echo(value=await self.node.call(p.node, p.service_method, p.params, timeout=5))

    @method(mutates=True)
    async def bump(self) -> Counter:
        """Increment a counter (to see how often a call really ran)."""
        self.bumps += 1
        return Counter(count=self.bumps)

    @method(mutates=False)
    async def count(self) -> Counter:
        """The counter."""
        return Counter(count=self.bumps)
