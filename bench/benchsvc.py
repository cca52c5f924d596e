"""The benchmark's plug-in service (loaded by bench nodes via ``services = ["benchsvc:BenchService"]``).

``bench.echo`` answers with its params (a same-size payload echo for P1-P3, P5);
``bench.emit`` publishes events from inside the node at a paced rate (the P4
publisher, paced by the same function as the floor's publisher).
"""

from __future__ import annotations

import time

from pydantic import BaseModel, ConfigDict, Field

from cloudisense.node import Service, method

from _common import event_data, paced


class EchoParams(BaseModel):
    model_config = ConfigDict(extra="allow")


class EmitParams(BaseModel):
    topic: str
    rate: float = Field(gt=0)
    count: int = Field(ge=1)
    size: int = Field(200, ge=0)
    step: int = 0


class Emitted(BaseModel):
    sent: int
    seconds: float


class BenchService(Service):
    name = "bench"
    description = "Benchmark helpers: a same-size echo and a paced event publisher."

    @method(mutates=False)
    def echo(self, p: EchoParams) -> dict:
        """Answer with the params given."""
        return p.model_dump()

    @method(mutates=False)
    async def emit(self, p: EmitParams) -> Emitted:
        """Publish ``count`` events on ``topic`` at ``rate`` per second."""
        node = self.node
        t0 = time.monotonic()

        def one(i: int) -> None:
            node.publish(p.topic, event_data(p.step, i, p.size))

        await paced(p.rate, p.count, one)
        return Emitted(sent=p.count, seconds=time.monotonic() - t0)
