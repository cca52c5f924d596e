"""/metrics /healthz /readyz /varz on real node processes (issue 17).

Counters are checked to move by exactly the calls made; the text parses with
prometheus-client's own parser; readiness follows the broker link across a
broker restart (a mosquitto of the test's own); the sensitive endpoints want a
token when the node has tokens.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from support import http_get as get, wait_until
from test_faults_support import Mosquitto
from wsutil import open_ws, request

pytestmark = pytest.mark.timeout(90)

OPERATOR, VIEWER = "ops-operator-secret", "ops-viewer-secret"
AUTH = {"tokens": [{"sha256": hashlib.sha256(OPERATOR.encode()).hexdigest(), "role": "operator", "name": "ops"},
                   {"sha256": hashlib.sha256(VIEWER.encode()).hexdigest(), "role": "viewer", "name": "prom"}]}


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(m: dict, name: str, **labels: str) -> float:
    return m.get((name, tuple(sorted(labels.items()))), 0.0)


def scrape(base: str, token: str | None = VIEWER) -> dict:
    status, body, headers = get(base, "/metrics", token)
    assert status == 200, body
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return samples(body)


async def calls(url: str, n: int, frame: dict, token: str = OPERATOR) -> list[dict]:
    ws = await open_ws(url)
    try:
        await request(ws, {"type": "hello", "id": "h", "token": token})
        return [await request(ws, {**frame, "type": "call", "id": f"c{i}"}) for i in range(n)]
    finally:
        await ws.close()


def test_metrics_count_exactly_the_calls_made_and_parse(cluster):
    a = cluster.start("ma", auth=AUTH)
    b = cluster.start("mb", auth=AUTH)
    wait_until(lambda: value(scrape(a.http), "cloudisense_cluster_members", state="online") == 2, 20,
               what="a to see b online")
    before = scrape(a.http)
    replies = asyncio.run(calls(a.url, 7, {"service": "system", "method": "metrics"}))
    assert all(r["type"] == "result" for r in replies), replies
    bad = asyncio.run(calls(a.url, 3, {"service": "system", "method": "nosuch"}))
    assert all(r["error"]["code"] == "unknown_method" for r in bad), bad
    remote = asyncio.run(calls(a.url, 4, {"node": "mb", "service": "system", "method": "metrics"}))
    assert all(r["type"] == "result" for r in remote), remote
    after = scrape(a.http)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("cloudisense_calls_total", kind="local", service="system", method="metrics", code="ok") == 7
    assert moved("cloudisense_calls_total", kind="local", service="other", method="other",
                 code="unknown_method") == 3                       # made-up names take no label slot
    assert moved("cloudisense_calls_total", kind="remote", service="system", method="metrics", code="ok") == 4
    assert moved("cloudisense_call_duration_seconds_count", kind="local") == 10
    assert moved("cloudisense_call_duration_seconds_count", kind="remote") == 4
    assert moved("cloudisense_call_duration_seconds_bucket", kind="remote", le="+Inf") == 4
    assert moved("cloudisense_remote_calls_total", direction="out") == 4
    assert moved("cloudisense_mqtt_messages_total", direction="out") >= 4
    # b served them: remote on its side too, and its own series carry no node id
    on_b = scrape(b.http)
    assert value(on_b, "cloudisense_calls_total", kind="remote", service="system", method="metrics", code="ok") == 4
    assert value(on_b, "cloudisense_remote_calls_total", direction="in") == 4
    assert not any("mb" in dict(labels).values() or "ma" in dict(labels).values() for _, labels in on_b)
    # the process metrics and the supervised logger are there
    assert value(after, "process_resident_memory_bytes") > 10e6
    assert value(after, "process_open_fds") > 3
    assert value(after, "cloudisense_process_state", process="logger", state="running") == 1
    assert value(after, "cloudisense_ready") == 1
    assert value(after, "cloudisense_federation_connected") == 1


def test_sensitive_endpoints_want_a_token_and_health_does_not(cluster):
    a = cluster.start("mt", auth=AUTH)
    for path in ("/metrics", "/varz"):
        status, body, headers = get(a.http, path)
        assert status == 401 and "Bearer" in headers.get("WWW-Authenticate", ""), (path, status, body)
        assert get(a.http, path, "not-a-token")[0] == 401
        assert get(a.http, path, VIEWER)[0] == 200
        assert get(a.http, path, OPERATOR)[0] == 200
    assert get(a.http, "/healthz")[:2] == (200, "ok\n")
    status, body, _ = get(a.http, "/readyz")
    assert (status, json.loads(body)["ready"]) == (200, True)
    # the edge's checks apply: a foreign Host header is refused
    req = urllib.request.Request(a.http.rstrip("/") + "/healthz", headers={"Host": "evil.example"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=5)
    assert e.value.code == 403


def test_varz_lists_clients_with_role_and_subscriptions(cluster):
    a = cluster.start("mv", auth=AUTH)

    async def scenario() -> dict:
        ws = await open_ws(a.url)
        try:
            await request(ws, {"type": "hello", "id": "h", "token": VIEWER, "name": "dash"})
            await request(ws, {"type": "subscribe", "id": "s1", "topic": "metrics/#"})
            await request(ws, {"type": "subscribe", "id": "s2", "topic": "process/#"})
            status, body, _ = await asyncio.to_thread(get, a.http, "/varz", VIEWER)
            assert status == 200
            return json.loads(body)
        finally:
            await ws.close()

    v = asyncio.run(scenario())
    assert v["node"] == "mv" and v["ready"] is True and "rpc" in v and "federation" in v
    [c] = v["clients_list"]
    assert c["role"] == "viewer" and c["remote"] == "127.0.0.1" and c["subscriptions"] == 2
    assert isinstance(c["queued_bytes"], int)


def test_readyz_follows_the_broker_link_across_a_restart(cluster, tmp_path):
    broker = Mosquitto(tmp_path)
    broker.start()
    try:
        a = cluster.start("mr", broker=broker.url)
        assert get(a.http, "/readyz")[0] == 200
        broker.kill()

        def not_ready():
            status, body, _ = get(a.http, "/readyz")
            return status == 503 and json.loads(body)
        why = wait_until(not_ready, 20, what="/readyz to say 503")
        assert why["ready"] is False and "broker" in why["reason"]
        assert get(a.http, "/healthz")[0] == 200          # alive all the same
        m = scrape(a.http, None)
        assert value(m, "cloudisense_ready") == 0 and value(m, "cloudisense_federation_connected") == 0
        broker.start()
        wait_until(lambda: get(a.http, "/readyz")[0] == 200, 30, what="/readyz to say 200 again")
        m = scrape(a.http, None)
        assert value(m, "cloudisense_federation_reconnects_total") >= 1
    finally:
        broker.stop()
