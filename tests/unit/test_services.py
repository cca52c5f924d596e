"""Service registry: method discovery, schemas, validation, errors."""

import asyncio

import pytest
from pydantic import BaseModel, Field

from cloudisense.node import InvalidParams, Registry, Service, UnknownMethod, UnknownService, method

pytestmark = pytest.mark.timeout(30)


class AddParams(BaseModel):
    a: int
    b: int = Field(0, description="second operand")


class Sum(BaseModel):
    total: int


class Calc(Service):
    name = "calc"
    description = "Arithmetic."

    @method(mutates=False)
    async def add(self, p: AddParams) -> Sum:
        """Add two numbers."""
        return Sum(total=p.a + p.b)

    @method(mutates=True, description="Reset everything.")
    async def reset(self) -> None:
        return None

    async def helper(self):  # not exposed
        return 1


async def test_call_validates_and_serialises():
    r = Registry()
    r.add(Calc())
    assert await r.call("calc", "add", {"a": 2, "b": 3}) == {"total": 5}
    assert await r.call("calc", "reset", None) is None
    with pytest.raises(InvalidParams, match="a: Field required"):
        await r.call("calc", "add", {"b": 1})
    with pytest.raises(InvalidParams, match="a: Input should be a valid integer"):
        await r.call("calc", "add", {"a": "x"})
    with pytest.raises(InvalidParams, match="must be an object"):
        await r.call("calc", "add", [1, 2])
    with pytest.raises(UnknownService, match="'nope'.*calc"):
        await r.call("nope", "add", {})
    with pytest.raises(UnknownMethod, match="'helper'.*add, reset"):
        await r.call("calc", "helper", {})


def test_describe_has_schemas_and_mutates():
    r = Registry()
    r.add(Calc())
    d = r.describe()["calc"]
    assert d["description"] == "Arithmetic."
    add = d["methods"]["add"]
    assert add["mutates"] is False and add["description"] == "Add two numbers."
    assert add["params"]["required"] == ["a"]
    assert add["params"]["properties"]["b"]["description"] == "second operand"
    assert add["result"]["properties"]["total"]["type"] == "integer"
    assert d["methods"]["reset"] == {"description": "Reset everything.", "mutates": True,
                                     "params": {"additionalProperties": False, "description": "A method without parameters.",
                                                "properties": {}, "title": "NoParams", "type": "object"},
                                     "result": {"type": "null"}}
    assert "helper" not in d["methods"]
    assert r.mutates("calc", "reset") and not r.mutates("calc", "add")


def test_duplicate_and_invalid_services_rejected():
    r = Registry()
    r.add(Calc())
    with pytest.raises(ValueError, match="twice"):
        r.add(Calc())

    class NoName(Service):
        pass
    with pytest.raises(TypeError, match="no name"):
        r.add(NoName())

    with pytest.raises(TypeError, match="is a generator"):
        class Gen(Service):  # noqa: F841
            name = "gen"

            @method(mutates=False)
            async def x(self):
                yield 1

    with pytest.raises(TypeError, match="marks a function"):
        method(mutates=False)(staticmethod(lambda: 1))  # type: ignore[type-var]

    class BadParams(Service):
        name = "bad"

        @method(mutates=False)
        async def x(self, p: int) -> None:
            return None
    with pytest.raises(TypeError, match="pydantic model"):
        r.add(BadParams())


def test_builtin_services_describe():
    from cloudisense.node._builtin import NodeService, PubSubService, SystemService
    r = Registry()
    for s in (NodeService(), SystemService("sim:40"), PubSubService()):
        r.add(s)
    d = r.describe()
    assert set(d["node"]["methods"]) == {"ping", "describe", "cluster"}
    assert set(d["system"]["methods"]) == {"info", "metrics"}
    assert d["pubsub"]["methods"]["publish"]["mutates"] is True
    assert all(m["description"] for s in d.values() for m in s["methods"].values())


def test_simulated_temperature_drifts_within_bounds():
    from cloudisense.node._builtin import Thermometer
    t = Thermometer("sim:45", seed="x")
    values = [t.read() for _ in range(500)]
    assert all(src == "simulated" and 43 <= v <= 47 for v, src in values)
    assert len({v for v, _ in values}) > 10
    assert Thermometer("fixed:41.5").read() == (41.5, "fixed")


async def test_a_plain_def_method_is_called_described_and_refused_like_an_async_one():
    class Both(Service):
        name = "both"

        @method(mutates=False)
        def now(self, p: AddParams) -> Sum:
            """Add at once."""
            if p.a < 0:
                raise InvalidParams("a must not be negative")
            return Sum(total=p.a + p.b)

        @method(mutates=False)
        async def later(self, p: AddParams) -> Sum:
            """Add after a wait."""
            await asyncio.sleep(0)
            return Sum(total=p.a + p.b)

    r = Registry()
    r.add(Both())
    assert await r.call("both", "now", {"a": 2, "b": 3}) == {"total": 5}
    assert await r.call("both", "later", {"a": 2, "b": 3}) == {"total": 5}
    assert not r.is_async("both", "now") and r.is_async("both", "later")
    assert not r.is_async("both", "nope") and not r.is_async("nope", "now")
    d = r.describe()["both"]["methods"]
    assert d["now"]["params"] == d["later"]["params"] and d["now"]["result"] == d["later"]["result"]
    with pytest.raises(InvalidParams, match="negative"):
        await r.call("both", "now", {"a": -1})
    with pytest.raises(InvalidParams, match="invalid params"):
        await r.call("both", "now", {"a": "x"})
