"""A plug-in service used by the tests (loaded through the ``services`` config key)."""

import asyncio

from pydantic import BaseModel, Field

from cloudisense.node import Service, method


class SleepParams(BaseModel):
    seconds: float = Field(ge=0, le=60)


class Echo(BaseModel):
    value: object = None


class TestService(Service):
    name = "testsvc"
    description = "Test helpers: sleep, crash, echo."

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
