"""Cluster PKI: the certificates really work, in real TLS handshakes over loopback and for OpenSSL."""

from __future__ import annotations

import ipaddress
import shutil
import socket
import ssl
import stat
import subprocess
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cloudisense.node._certs import generate_certs
from cloudisense.node._errors import ConfigError

pytestmark = pytest.mark.timeout(30)

NODES = ["node-a", "node-b"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("pki") / "cluster"  # does not exist yet: created
    generate_certs(d, NODES)
    return d


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("other")
    generate_certs(d, NODES)  # same names, another CA
    return d


def server_ctx(d: Path, name: str, *, ca: Path | None, require_client_cert: bool = True):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(d / f"{name}.pem", d / f"{name}.key")
    if ca is not None:
        ctx.load_verify_locations(ca)
    ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_NONE
    return ctx


def client_ctx(ca: Path, cert_dir: Path | None = None, name: str | None = None):
    ctx = ssl.create_default_context(cafile=str(ca))  # verifies chain and hostname
    if name is not None:
        ctx.load_cert_chain(cert_dir / f"{name}.pem", cert_dir / f"{name}.key")
    return ctx


def handshake(sctx: ssl.SSLContext, cctx: ssl.SSLContext, server_hostname: str = "localhost"):
    """One TLS connection over 127.0.0.1 with an echo; returns (client_error, server_error, info)."""
    info: dict = {}
    server_error: list[BaseException] = []
    with socket.create_server(("127.0.0.1", 0)) as lsock:
        lsock.settimeout(10)
        port = lsock.getsockname()[1]

        def serve():
            try:
                conn, _ = lsock.accept()
                conn.settimeout(10)
                with sctx.wrap_socket(conn, server_side=True) as s:
                    info["client_cert"] = s.getpeercert()
                    s.sendall(s.recv(5).upper())
            except BaseException as e:  # noqa: BLE001 - reported to the test
                server_error.append(e)

        t = threading.Thread(target=serve, name="tls-echo-server", daemon=True)
        t.start()
        client_error = None
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                    cctx.wrap_socket(raw, server_hostname=server_hostname) as c:
                info["server_cert"] = c.getpeercert()
                info["version"] = c.version()
                c.sendall(b"hello")
                info["echo"] = c.recv(5)
                if not info["echo"]:
                    raise ConnectionError("server closed the connection")
        except (OSError, ssl.SSLError) as e:
            client_error = e
        t.join(10)
        assert not t.is_alive()
    return client_error, (server_error[0] if server_error else None), info


def cn(cert_dict: dict) -> str:
    return dict(x[0] for x in cert_dict["subject"])["commonName"]


# --------------------------------------------------------------------------- handshakes

@pytest.mark.parametrize("hostname", ["localhost", "127.0.0.1"])
def test_mutual_tls_between_two_nodes(pki, hostname):
    cerr, serr, info = handshake(server_ctx(pki, "node-a", ca=pki / "ca.pem"),
                                 client_ctx(pki / "ca.pem", pki, "node-b"), hostname)
    assert cerr is None and serr is None
    assert info["echo"] == b"HELLO"
    assert cn(info["server_cert"]) == "node-a"
    assert cn(info["client_cert"]) == "node-b"  # the server verified the client's cert


def test_a_node_connects_to_the_broker_with_its_client_cert(pki):
    cerr, serr, info = handshake(server_ctx(pki, "broker", ca=pki / "ca.pem"),
                                 client_ctx(pki / "ca.pem", pki, "node-a"))
    assert cerr is None and serr is None
    assert cn(info["server_cert"]) == "broker" and cn(info["client_cert"]) == "node-a"


def test_client_trusting_another_ca_refuses_the_server(pki, other_pki):
    cerr, _, info = handshake(server_ctx(pki, "node-a", ca=None, require_client_cert=False),
                              client_ctx(other_pki / "ca.pem"))
    assert isinstance(cerr, ssl.SSLCertVerificationError)
    assert "echo" not in info


def test_server_refuses_a_client_cert_from_another_ca(pki, other_pki):
    cerr, serr, info = handshake(server_ctx(pki, "node-a", ca=pki / "ca.pem"),
                                 client_ctx(pki / "ca.pem", other_pki, "node-b"))
    assert isinstance(serr, ssl.SSLError)
    assert cerr is not None and "client_cert" not in info and "echo" not in info


def test_server_refuses_a_client_without_a_cert(pki):
    cerr, serr, info = handshake(server_ctx(pki, "node-a", ca=pki / "ca.pem"),
                                 client_ctx(pki / "ca.pem"))
    assert isinstance(serr, ssl.SSLError)
    assert cerr is not None and "echo" not in info


def test_a_name_not_in_the_san_is_refused(pki):
    cerr, _, _ = handshake(server_ctx(pki, "node-a", ca=None, require_client_cert=False),
                           client_ctx(pki / "ca.pem"), server_hostname="example.com")
    assert isinstance(cerr, ssl.SSLCertVerificationError)
    assert "example.com" in str(cerr)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not on PATH")
def test_openssl_verify(pki, other_pki):
    def verify(ca, *certs, purpose):
        return subprocess.run(["openssl", "verify", "-CAfile", str(ca), "-purpose", purpose,
                               *map(str, certs)], capture_output=True, text=True, timeout=20)

    leaves = [pki / f"{n}.pem" for n in [*NODES, "broker"]]
    for purpose in ("sslserver", "sslclient"):
        r = verify(pki / "ca.pem", *leaves, purpose=purpose)
        assert r.returncode == 0, r.stdout + r.stderr
        assert r.stdout.count(": OK") == len(leaves)
    r = verify(other_pki / "ca.pem", pki / "node-a.pem", purpose="sslserver")
    assert r.returncode != 0


# --------------------------------------------------------------------------- contents

def test_files_and_key_modes(pki):
    names = sorted(p.name for p in pki.iterdir())
    assert names == sorted(["ca.pem", "ca.key", "broker.pem", "broker.key",
                            *(f"{n}.{e}" for n in NODES for e in ("pem", "key"))])
    for p in pki.glob("*.key"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
        assert p.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")


def test_returned_paths(tmp_path):
    out = generate_certs(tmp_path, ["x"], hosts=["localhost"])
    assert out == {n: tmp_path / n for n in
                   ["ca.pem", "ca.key", "x.pem", "x.key", "broker.pem", "broker.key"]}


def test_leaf_certificate_contents(tmp_path):
    generate_certs(tmp_path, ["node-a"], hosts=["localhost", "127.0.0.1", "::1", "mqtt.lan"],
                   days=10)
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.pem").read_bytes())
    cert = x509.load_pem_x509_certificate((tmp_path / "node-a.pem").read_bytes())
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp256r1"
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "node-a"
    assert cert.issuer == ca.subject
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "mqtt.lan"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1"),
                                                      ipaddress.ip_address("::1")]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert 10 * 86400 <= lifetime.total_seconds() <= 10 * 86400 + 600
    cert.verify_directly_issued_by(ca)


# --------------------------------------------------------------------------- overwrite / reuse

def test_refuses_to_overwrite_and_writes_nothing(tmp_path):
    generate_certs(tmp_path, ["a"])
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(FileExistsError, match=r"a\.pem"):
        generate_certs(tmp_path, ["a", "b"])
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no b.* either


def test_refuses_when_only_part_of_a_ca_exists(tmp_path):
    (tmp_path / "ca.pem").write_text("left over")
    with pytest.raises(FileExistsError, match=r"ca\.pem"):
        generate_certs(tmp_path, ["a"])


def test_force_starts_over_with_a_new_ca(tmp_path):
    generate_certs(tmp_path, ["a"])
    old_ca = (tmp_path / "ca.pem").read_bytes()
    (tmp_path / "a.key").chmod(0o644)
    generate_certs(tmp_path, ["a"], force=True)
    assert (tmp_path / "ca.pem").read_bytes() != old_ca
    assert stat.S_IMODE((tmp_path / "a.key").stat().st_mode) == 0o600
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.pem").read_bytes())
    x509.load_pem_x509_certificate((tmp_path / "a.pem").read_bytes()).verify_directly_issued_by(ca)


def test_adding_a_node_later_reuses_the_ca(tmp_path):
    generate_certs(tmp_path, ["a"])
    ca_before = (tmp_path / "ca.pem").read_bytes()
    broker_before = (tmp_path / "broker.pem").read_bytes()
    out = generate_certs(tmp_path, ["d"])
    assert sorted(out) == ["d.key", "d.pem"]
    assert (tmp_path / "broker.pem").read_bytes() == broker_before
    assert (tmp_path / "ca.pem").read_bytes() == ca_before
    cerr, serr, info = handshake(server_ctx(tmp_path, "a", ca=tmp_path / "ca.pem"),
                                 client_ctx(tmp_path / "ca.pem", tmp_path, "d"))
    assert cerr is None and serr is None and cn(info["client_cert"]) == "d"


def test_reissuing_the_broker_cert_under_an_existing_ca(tmp_path):
    generate_certs(tmp_path, ["a"])
    with pytest.raises(FileExistsError, match=r"broker\.pem"):
        generate_certs(tmp_path, ["d"], broker=True)
    (tmp_path / "broker.pem").unlink()
    (tmp_path / "broker.key").unlink()
    out = generate_certs(tmp_path, ["d"], broker=True)
    assert sorted(out) == ["broker.key", "broker.pem", "d.key", "d.pem"]
    cerr, serr, _ = handshake(server_ctx(tmp_path, "broker", ca=tmp_path / "ca.pem"),
                              client_ctx(tmp_path / "ca.pem", tmp_path, "a"))
    assert cerr is None and serr is None


def test_reusing_a_ca_whose_key_does_not_match_is_config_error(tmp_path, other_pki):
    generate_certs(tmp_path, ["a"])
    shutil.copy(other_pki / "ca.key", tmp_path / "ca.key")
    with pytest.raises(ConfigError, match="is not the key of"):
        generate_certs(tmp_path, ["d"])


# --------------------------------------------------------------------------- validation

@pytest.mark.parametrize("nodes, match", [
    ([], "no nodes"),
    (["ok", "bad/id"], "not valid"),
    (["ca"], "CA"),
    (["broker"], "MQTT broker"),
    (["a", "b", "a"], "repeated: a"),
])
def test_bad_node_lists_are_config_errors(tmp_path, nodes, match):
    with pytest.raises(ConfigError, match=match):
        generate_certs(tmp_path, nodes)
    assert list(tmp_path.iterdir()) == []


def test_bad_hosts_and_days_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="hosts"):
        generate_certs(tmp_path, ["a"], hosts=[])
    with pytest.raises(ConfigError, match="days"):
        generate_certs(tmp_path, ["a"], days=0)
    assert list(tmp_path.iterdir()) == []
