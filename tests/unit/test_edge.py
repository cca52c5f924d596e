"""The gateway's HTTP-edge decisions (pure): Host and Origin, auth-failure blocks, the cheap id scan."""

from __future__ import annotations

import pytest

from cloudisense.node._edge import AuthFailures, EdgePolicy, normalize_origin
from cloudisense.node._frames import scan_id as _scan_id

pytestmark = pytest.mark.timeout(10)


def loopback(**kw) -> EdgePolicy:
    return EdgePolicy("127.0.0.1", 8765, tls=False, **kw)


@pytest.mark.parametrize("host", ["127.0.0.1:8765", "localhost:8765", "[::1]:8765", "127.9.9.9:8765",
                                  "LOCALHOST:8765"])
def test_loopback_names_on_the_right_port_pass(host):
    assert loopback().host_error(host) is None


@pytest.mark.parametrize("host", ["evil.example:8765", "evil.example", "127.0.0.1:8766", "127.0.0.1", "",
                                  "localhost:", "[::1", "127.0.0.1:99999", "localhost.evil.example:8765",
                                  "0.0.0.0:8765", "10.0.0.1:8765"])
def test_other_hosts_are_refused_on_loopback(host):
    assert loopback().host_error(host) is not None
    assert loopback().host_error(None) is not None


def test_allowed_hosts_admit_names():
    p = loopback(allowed_hosts=["dash.internal", "proxy.example:443"])
    assert p.host_error("dash.internal") is None and p.host_error("dash.internal:8080") is None
    assert p.host_error("proxy.example:443") is None
    assert p.host_error("proxy.example:80") is not None


def test_non_loopback_listener():
    open_ = EdgePolicy("0.0.0.0", 8765, tls=True)
    assert open_.host_error("anything.example:8765") is None         # tokens guard it (require_auth_remote)
    named = EdgePolicy("0.0.0.0", 8765, tls=True, allowed_hosts=["node1.lan"])
    assert named.host_error("node1.lan:8765") is None
    assert named.host_error("192.168.1.5:8765") is None              # an address can't be rebound
    assert named.host_error("evil.example:8765") is not None


@pytest.mark.parametrize("origin", [None, "http://127.0.0.1:8765", "http://localhost:8765", "http://[::1]:8765",
                                    "HTTP://LOCALHOST:8765"])
def test_own_origins_pass(origin):
    assert loopback().origin_error(origin, "127.0.0.1:8765") is None


@pytest.mark.parametrize("origin", ["http://evil.example", "http://127.0.0.1:8766", "https://127.0.0.1:8765",
                                    "null", "http://127.0.0.1:8765/path", "file://", "javascript:x",
                                    "http://user@127.0.0.1:8765", "ws://127.0.0.1:8765", ""])
def test_other_origins_are_refused(origin):
    assert loopback().origin_error(origin, "127.0.0.1:8765") is not None


def test_allowed_origins():
    p = loopback(allowed_origins=["https://dash.example", "http://127.0.0.1:3000"])
    assert p.origin_error("https://dash.example:443", "127.0.0.1:8765") is None
    assert p.origin_error("http://127.0.0.1:3000", "127.0.0.1:8765") is None
    assert p.origin_error("http://dash.example", "127.0.0.1:8765") is not None
    assert loopback(allowed_origins=["*"]).origin_error("http://evil.example", "127.0.0.1:8765") is None
    assert loopback(allowed_origins=["null"]).origin_error("null", "127.0.0.1:8765") is None


def test_same_origin_as_host_on_a_public_listener():
    p = EdgePolicy("0.0.0.0", 8765, tls=True)
    assert p.origin_error("https://node1.lan:8765", "node1.lan:8765") is None
    assert p.origin_error("https://evil.example", "node1.lan:8765") is not None
    assert p.origin_error("http://node1.lan:8765", "node1.lan:8765") is not None     # wss node, http page


def test_normalize_origin():
    assert normalize_origin("https://Example.COM") == ("https", "example.com", 443)
    assert normalize_origin("http://[::1]:80") == ("http", "::1", 80)
    assert normalize_origin("ftp://x") is None and normalize_origin("x") is None


def test_auth_failures_block_and_expire():
    now = [0.0]
    f = AuthFailures(3, 10.0, 5.0, clock=lambda: now[0])
    assert not f.fail("a") and not f.fail("a")
    now[0] = 11.0                      # the first two are outside the window now
    assert not f.fail("a") and not f.fail("a")
    assert f.blocked_for("a") == 0
    assert f.fail("a")                 # three within 10 s
    assert f.blocked_for("a") == 5.0 and f.blocked_for("b") == 0
    now[0] = 16.1
    assert f.blocked_for("a") == 0


def test_auth_failures_memory_is_bounded():
    f = AuthFailures(2, 10.0, 5.0, max_addresses=100, clock=lambda: 0.0)
    for i in range(10_000):
        f.fail(f"10.0.{i // 256}.{i % 256}")
        f.fail(f"10.0.{i // 256}.{i % 256}")
    assert len(f._fails) <= 100 and len(f._blocked) <= 100


@pytest.mark.parametrize("text,rid", [
    ('{"type":"call","id":"a\\"b","x":1}', 'a"b'),
    ('{"params":{"id":5},"id":7}', 7),
    ('{"id" : -12 , "x": 1}', -12),
    ('{"a":"id","id":3}', 3),
    ('[{"id":1}]', None),
    ('{"x":[1,{"id":2}],"id":"q"}', "q"),
    ('{"id":1.5}', None),
    ('{"id":"ab', None),
    ('{"x":"' + "y" * 600 + '","id":1}', None),       # not in the first 512 characters
    ('{"id":"\\ud800"}', None),                         # a lone surrogate is no id
])
def test_scan_id(text, rid):
    assert _scan_id(text) == rid
