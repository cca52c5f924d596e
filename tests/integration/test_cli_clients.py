"""``cloudisense pub``, ``nodes`` and ``reply`` (issue 18), as real processes against real nodes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from support import wait_until

pytestmark = pytest.mark.timeout(60)

# the command behind `reply`: params on stdin → result on stdout; {"fail": true} exits 3 with a message
ANSWER = ("import json, sys; p = json.load(sys.stdin); "
          "sys.exit(print('no way: ' + p['why'], file=sys.stderr) or 3) if p.get('fail') else "
          "print(json.dumps({'upper': p.get('text', '').upper()}) if 'text' in p else 'plain words')")


def cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cloudisense.node.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_pub_reaches_a_subscriber_and_nodes_lists_the_cluster(cluster):
    a, b = cluster.spawn("pa"), cluster.spawn("pb")
    a.wait_ready(), b.wait_ready()
    sub = subprocess.Popen([sys.executable, "-m", "cloudisense.node.cli", "sub", "--url", b.url, "--node", "pa",
                            "--wait", "20", "--count", "1", "app/#"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    try:
        wait_until(lambda: "# subscribed" in (sub.stderr.readline() or ""), 20, what="sub subscribed")
        r = cli("pub", "--url", a.url, "app/hello", '{"n": 1}')
        assert r.returncode == 0, r.stderr
        out, _ = sub.communicate(timeout=20)
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.communicate()
    ev = json.loads(out)
    assert ev["node"] == "pa" and ev["topic"] == "app/hello" and ev["data"] == {"n": 1}
    r = cli("pub", "--url", a.url, "app/x", "not json")
    assert r.returncode == 2 and "not valid JSON" in r.stderr, r.stderr
    r = cli("pub", "--url", a.url, "app/#", "1")
    assert r.returncode == 1 and "bad_request" in r.stderr, r.stderr

    def both_online():
        r = cli("nodes", "--url", a.url, "--json")
        return r.returncode == 0 and {n["id"] for n in json.loads(r.stdout)["nodes"] if n["online"]} == {"pa", "pb"}
    wait_until(both_online, 20, interval=0.3, what="both nodes online")
    r = cli("nodes", "--url", a.url)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:2] == ["NODE", "STATE"]
    assert any(ln.startswith("pa *") and "online" in ln for ln in lines), r.stdout
    assert any(ln.startswith("pb ") and "online" in ln for ln in lines), r.stdout


def test_reply_answers_calls_with_a_command_until_stopped(cluster):
    a, b = cluster.spawn("ya"), cluster.spawn("yb")
    a.wait_ready(), b.wait_ready()
    rep = subprocess.Popen([sys.executable, "-m", "cloudisense.node.cli", "reply", "--url", a.url, "echo.say",
                            "--read-only", "--description", "upper-cases text", "--timeout", "2",
                            "--exec", f"{sys.executable} -c \"{ANSWER}\""],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: "# answering" in (rep.stderr.readline() or ""), 20, what="reply registered")

        def call(*args: str) -> subprocess.CompletedProcess:
            return cli("call", "--url", b.url, "--wait", "10", "ya", "echo.say", *args)
        r = call('{"text": "hi"}')                           # from the other node
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout) == {"upper": "HI"}
        r = call("{}")
        assert json.loads(r.stdout) == "plain words"
        r = call('{"fail": true, "why": "the disk"}')
        assert r.returncode == 1 and "error internal" in r.stderr and "no way: the disk" in r.stderr, r.stderr
        d = json.loads(cli("call", "--url", a.url, ".", "node.describe").stdout)
        say = d["services"]["echo"]["methods"]["say"]
        assert say["mutates"] is False and say["description"] == "upper-cases text" and say["offered_by"] == "client"
        r = cli("reply", "--url", a.url, "echo.say", "--exec", "true")   # held by the running one
        assert r.returncode == 1 and "conflict" in r.stderr, r.stderr
    finally:
        rep.terminate()
        _, err = rep.communicate(timeout=15)
    assert rep.returncode == 0, err
    r = cli("call", "--url", a.url, ".", "echo.say", "{}")
    assert r.returncode == 1 and "unknown_service" in r.stderr, r.stderr


def test_the_readme_service_in_10_lines_runs_as_written(cluster, tmp_path):
    import re
    from pathlib import Path
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text[text.index("## Write a service in 10 lines"):]
    code = re.search(r"^```python\n(.*?)^```$", section, flags=re.S | re.M).group(1)
    assert len([ln for ln in code.splitlines() if ln.strip()]) <= 15
    a, b = cluster.spawn("ra10"), cluster.spawn("rb10")
    a.wait_ready(), b.wait_ready()
    script = tmp_path / "greet.py"
    script.write_text(code.replace("ws://127.0.0.1:8765/ws", a.url))
    svc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def answered():
            r = cli("call", "--url", b.url, "--wait", "5", "ra10", "greet.hello", '{"who": "you"}')
            return r.returncode == 0 and json.loads(r.stdout)
        assert wait_until(answered, 20, interval=0.3, what="greet.hello from the other node") == {"text": "hello you"}
    finally:
        svc.terminate()
        svc.communicate(timeout=10)
