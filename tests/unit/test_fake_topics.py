"""The fake cluster (tools/_fake.py) routes events by the node's own matcher, MQTT's ``$`` rule included."""

from __future__ import annotations

import asyncio

import pytest

from cloudisense.node._pubsub import SubscriptionTable
from cloudisense.tools._fake import FakeCluster, FakeNode

pytestmark = pytest.mark.timeout(20)

CASES = [("#", "$sys/stats"), ("+/stats", "$sys/stats"), ("$sys/#", "$sys/stats"), ("#", "metrics/system"),
         ("metrics/+", "metrics/system"), ("metrics/#", "metrics"), ("a/+/c", "a/b/c"), ("a/+", "a/b/c")]


def node_delivers(pattern: str, topic: str) -> bool:
    table = SubscriptionTable()
    table.add("s", "n1", pattern)
    return bool(table.match("n1", topic))


async def fake_delivers(pattern: str, topic: str) -> bool:
    cluster = FakeCluster([FakeNode("n1")])
    cluster.events[("n1", topic)] = [{"topic": topic, "data": 1}]
    sub = await cluster.subscribe("n1", pattern)
    return bool(sub._events)


@pytest.mark.parametrize("pattern,topic", CASES)
def test_the_fake_delivers_exactly_what_a_node_delivers(pattern: str, topic: str) -> None:
    assert asyncio.run(fake_delivers(pattern, topic)) == node_delivers(pattern, topic)


def test_a_wildcard_at_the_root_does_not_see_dollar_topics_in_the_fake() -> None:
    assert asyncio.run(fake_delivers("#", "$sys/stats")) is False
