"""Key distribution, one command per machine: `keys gen`, `GET /pubkey`, `trust add FILE|URL`; the signed demo."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cloudisense.node._errors import ConfigError
from cloudisense.tui.demo import NODES, demo_keys
from support import async_wait_until
from wsutil import open_ws, request

pytestmark = pytest.mark.timeout(120)

BROKER = "mqtt://127.0.0.1:1883"
PLUG = ["plugins.testsvc:TestService", "plugins.testsvc:RelayService"]


def cli(*args: str, state: Path | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDISENSE_")}
    if state is not None:
        env["CLOUDISENSE_STATE_DIR"] = str(state)
    return subprocess.run([sys.executable, "-m", "cloudisense.node.cli", *args], capture_output=True, text=True,
                          timeout=60, env=env, input=stdin, check=False)


def keys_gen(node_id: str, state: Path) -> tuple[dict, str]:
    """Run `keys gen ID` on a "machine" (its state dir): the pasted [security] table and the fingerprint."""
    r = cli("keys", "gen", node_id, state=state)
    assert r.returncode == 0, r.stderr
    security = tomllib.loads(r.stdout)["security"]
    (fp,) = [line.split(": ", 1)[1] for line in r.stderr.splitlines() if "key fingerprint:" in line]
    return security, fp


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_keys_gen_writes_the_pair_under_the_state_dir_and_prints_the_config_lines(tmp_path):
    security, fp = keys_gen("node-q", tmp_path / "state")
    key, trust = Path(security["key"]), Path(security["trust"])
    assert key == tmp_path / "state" / "keys" / "node-q.key" and trust == key.parent
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and (trust / "node-q.pub").exists()
    assert fp.startswith("SHA256:")
    r = cli("keys", "gen", "node-q", state=tmp_path / "state")   # never overwrites a key
    assert r.returncode != 0 and "already exists" in r.stderr
    r = cli("keys", "gen", "q2", "--out", str(tmp_path / "elsewhere"))
    assert r.returncode == 0 and tomllib.loads(r.stdout)["security"]["trust"] == str(tmp_path / "elsewhere")


def test_trust_add_file_shows_the_fingerprint_and_is_the_operators_decision(tmp_path):
    _, fp_b = keys_gen("nb", tmp_path / "b")
    _, fp_x = keys_gen("nx", tmp_path / "x")
    pub = tmp_path / "b" / "keys" / "nb.pub"
    store = tmp_path / "store"

    r = cli("trust", "add", str(pub), "--dir", str(store))   # no terminal to ask on, no --yes
    assert r.returncode == 2 and fp_b in r.stderr and "--fingerprint" in r.stderr
    assert not (store / "nb.pub").exists()
    r = cli("trust", "add", str(pub), "--dir", str(store), "--fingerprint", fp_x)   # not the key we expected
    assert r.returncode == 2 and "not added" in r.stderr and not (store / "nb.pub").exists()
    r = cli("trust", "add", str(pub), "--dir", str(store), "--fingerprint", fp_b)
    assert r.returncode == 0 and "added: nb" in r.stdout, r.stderr
    assert (store / "nb.pub").read_bytes() == pub.read_bytes()
    r = cli("trust", "add", str(pub), "--dir", str(store), "--yes")
    assert r.returncode == 0 and "already trusted" in r.stdout
    # another key under a trusted id: refused (a rotation is done by hand, an impostor not at all)
    r = cli("trust", "add", str(tmp_path / "x" / "keys" / "nx.pub"), "--id", "nb", "--dir", str(store), "--yes")
    assert r.returncode == 2 and "another key" in r.stderr
    # a list-file trust store gets a line
    listed = tmp_path / "trusted.txt"
    listed.write_text("# cluster\n")
    r = cli("trust", "add", str(pub), "--dir", str(listed), "--yes")
    assert r.returncode == 0, r.stderr
    line = listed.read_text().splitlines()[-1].split()
    assert line[0] == "nb" and len(base64.b64decode(line[1])) == 32
    r = cli("trust", "add", str(tmp_path / "nope.pub"), "--dir", str(store), "--yes")
    assert r.returncode == 2 and "cannot read" in r.stderr


async def test_one_command_per_machine_then_a_signed_cluster(cluster, tmp_path):
    """Two machines: `keys gen` on each, paste the lines, start; `trust add URL` of the other node (its
    /pubkey), checking the fingerprint `keys gen` printed there; restart: they federate, MAC'd."""
    sec_a, fp_a = keys_gen("ma", tmp_path / "A")
    sec_b, fp_b = keys_gen("mb", tmp_path / "B")
    a = cluster.start("ma", broker=BROKER, services=PLUG, security=sec_a)
    b = cluster.start("mb", broker=BROKER, services=PLUG, security=sec_b)
    plain = cluster.start("plain", broker="none")

    status, body = get(a.http + "pubkey")
    doc = json.loads(body)
    assert status == 200 and doc["id"] == "ma" and doc["fingerprint"] == fp_a
    assert get(plain.http + "pubkey")[0] == 404
    r = cli("trust", "add", plain.url, "--yes", state=tmp_path / "A")
    assert r.returncode == 2, r.stdout

    r = cli("trust", "add", b.url, "--fingerprint", fp_b, state=tmp_path / "A")   # the ws:// URL works too
    assert r.returncode == 0 and "added: mb" in r.stdout, r.stderr
    r = cli("trust", "add", a.http, "--fingerprint", fp_b, state=tmp_path / "B")   # someone else's key: refused
    assert r.returncode == 2
    r = cli("trust", "add", a.http, "--fingerprint", fp_a, state=tmp_path / "B")
    assert r.returncode == 0, r.stderr
    a.stop(), b.stop()
    a = cluster.start("ma", broker=BROKER, services=PLUG, security=sec_a)
    b = cluster.start("mb", broker=BROKER, services=PLUG, security=sec_b)
    async with await open_ws(a.url) as wa:
        async def online():
            r = await request(wa, {"type": "call", "id": "c", "service": "node", "method": "cluster"})
            return {"ma", "mb"} <= {n["id"] for n in r["result"]["nodes"] if n["online"]}
        await async_wait_until(online, 20, interval=0.2, what="ma and mb online to each other")
        r = await request(wa, {"type": "call", "id": "b", "node": "mb", "service": "relay", "method": "bump"})
        assert r["result"] == {"count": 1}, r
        r = await request(wa, {"type": "call", "id": "s", "service": "pubsub", "method": "stats"})
        fed = r["result"]["federation"]
        assert fed["signing"] and fed["unicast_auth"] == "mac" and not any(fed["rejected"].values()), fed
    assert "UNAUTHENTICATED" not in a.log() and "UNAUTHENTICATED" not in b.log()


def test_demo_keys_are_made_once_and_reused(tmp_path):
    demo = demo_keys(tmp_path)
    ids = [n for n, _ in NODES]
    first = {n: (demo / "keys" / f"{n}.key").read_bytes() for n in ids}
    assert sorted(p.name for p in (demo / "trust").iterdir()) == sorted(f"{n}.pub" for n in ids)
    assert demo_keys(tmp_path) == demo
    assert {n: (demo / "keys" / f"{n}.key").read_bytes() for n in ids} == first   # the same keys
    (demo / "keys" / "node-b.pub").unlink()
    with pytest.raises(ConfigError, match="node-b"):
        demo_keys(tmp_path)
