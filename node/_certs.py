"""A small PKI for a cluster (and for tests): one CA, a certificate per node, one for the broker.

Everything is EC P-256 / ECDSA-SHA256, which OpenSSL, mosquitto, EMQX, HiveMQ,
NATS and Python's ``ssl`` all accept.  Each leaf certificate:

- has the node id (or ``broker``) as its subject CN, which brokers can use as
  the MQTT username (mosquitto: ``use_identity_as_username true``) so ACLs
  can pin a node to its own topics;
- lists ``hosts`` as subjectAltName (IP addresses as IP entries, the rest as
  DNS names), because clients check the SAN, never the CN;
- is good for both ends of a TLS connection (EKU serverAuth + clientAuth):
  the same pair serves ``wss://`` and authenticates the node to the broker.

Files (PEM; private keys PKCS8, mode 0600; the directory, if this makes it, 0755)::

    ca.pem ca.key  NODE.pem NODE.key ...  broker.pem broker.key

``ca.key`` is only needed to issue more certificates: keep it off the nodes.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ._config import node_id_error
from ._errors import ConfigError
from ._files import create_new, make_dir

__all__ = ["generate_certs"]

_RESERVED = ("ca", "broker")
_ORG = "CloudiSENSE"


def generate_certs(out_dir: str | Path, nodes: Sequence[str],
                   hosts: Sequence[str] = ("localhost", "127.0.0.1"), days: int = 825, *,
                   force: bool = False, broker: bool | None = None) -> dict[str, Path]:
    """Make a CA and a certificate per node (plus ``broker``) in ``out_dir``.

    Returns ``{file name: path}`` for every file written (``"ca.pem"``,
    ``"ca.key"``, ``"node-a.pem"``, ``"node-a.key"``, ``"broker.pem"``, ...).

    Refuses to overwrite anything (``FileExistsError`` listing the files,
    nothing written) unless ``force=True``, which starts over with a new CA.

    Adding nodes later: if ``ca.pem`` and ``ca.key`` are already there (and
    not ``force``), that CA is reused and not rewritten, so
    ``generate_certs(dir, ["node-d"])`` issues one more certificate that the
    existing cluster trusts.  ``broker`` (default: only with a new CA) says
    whether to issue ``broker.pem``/``broker.key`` too.

    A bad node id, a reserved name (``ca``, ``broker``), a duplicate, an empty
    host list or ``days < 1`` is a :class:`ConfigError`.
    """
    nodes = list(nodes)
    hosts = list(hosts)
    _validate(nodes, hosts, days)
    out = Path(out_dir)
    ca_pem, ca_key = out / "ca.pem", out / "ca.key"
    reuse_ca = not force and ca_pem.exists() and ca_key.exists()
    if broker is None:
        broker = not reuse_ca
    names = [*nodes, *(["broker"] if broker else [])]
    targets = [p for n in names for p in (out / f"{n}.pem", out / f"{n}.key")]
    if not reuse_ca:
        targets = [ca_pem, ca_key, *targets]
    # lexists: a dangling symlink is "taken" too (exists() would follow it and say no)
    taken = [p for p in targets if os.path.lexists(p)]
    if taken and not force:
        raise FileExistsError(f"refusing to overwrite {', '.join(map(str, taken))} "
                              "(pass force=True / --force to start over with a new CA)")

    now = dt.datetime.now(dt.timezone.utc)
    not_before = now - dt.timedelta(minutes=5)  # tolerate small clock skew between machines
    not_after = now + dt.timedelta(days=days)

    for p in taken:  # force: remove what is there (a symlink itself, never its target); written anew below
        os.unlink(p)
    if reuse_ca:
        ca_cert, ca_priv = _load_ca(ca_pem, ca_key)
        written: dict[str, Path] = {}
    else:
        ca_priv = ec.generate_private_key(ec.SECP256R1())
        ca_cert = _make_ca(ca_priv, not_before, not_after)
        make_dir(out, 0o755)  # the broker's user must reach broker.key in it; every key is 0600 itself
        _write(ca_key, _key_pem(ca_priv), 0o600)
        _write(ca_pem, ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
        written = {"ca.pem": ca_pem, "ca.key": ca_key}

    # A leaf must not outlive its CA (OpenSSL would reject it once the CA expires anyway).
    not_after = min(not_after, ca_cert.not_valid_after_utc)
    san = x509.SubjectAlternativeName([_general_name(h) for h in hosts])
    for name in names:
        priv = ec.generate_private_key(ec.SECP256R1())
        cert = _make_leaf(name, priv, ca_cert, ca_priv, san, not_before, not_after)
        key_path, pem_path = out / f"{name}.key", out / f"{name}.pem"
        _write(key_path, _key_pem(priv), 0o600)
        _write(pem_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        written[f"{name}.pem"] = pem_path
        written[f"{name}.key"] = key_path
    return written


def _validate(nodes: list[str], hosts: list[str], days: int) -> None:
    if not nodes:
        raise ConfigError("no nodes given: name at least one (e.g. --nodes a,b,c)")
    for n in nodes:
        if err := node_id_error(n):
            raise ConfigError(err)
        if n in _RESERVED:
            raise ConfigError(f"{n!r} can't be a node name here: {n}.pem is the "
                              f"{'CA' if n == 'ca' else 'MQTT broker'} certificate")
    dup = sorted({n for n in nodes if nodes.count(n) > 1})
    if dup:
        raise ConfigError(f"node names repeated: {', '.join(dup)}")
    if not hosts or any(not h or not isinstance(h, str) for h in hosts):
        raise ConfigError("hosts must be a non-empty list of DNS names / IP addresses "
                          "(the names clients connect to)")
    if days < 1:
        raise ConfigError(f"days must be >= 1, not {days}")


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return x509.DNSName(host)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORG),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _make_ca(priv: ec.EllipticCurvePrivateKey, not_before: dt.datetime,
             not_after: dt.datetime) -> x509.Certificate:
    # A random suffix keeps two clusters' CAs apart (distinct issuer names) in logs.
    name = _name(f"CloudiSENSE cluster CA {os.urandom(4).hex()}")
    pub = priv.public_key()
    return (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(pub)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)
            .sign(priv, hashes.SHA256()))


def _make_leaf(cn: str, priv: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate,
               ca_priv: ec.EllipticCurvePrivateKey, san: x509.SubjectAlternativeName,
               not_before: dt.datetime, not_after: dt.datetime) -> x509.Certificate:
    pub = priv.public_key()
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (x509.CertificateBuilder()
            .subject_name(_name(cn)).issuer_name(ca_cert.subject).public_key(pub)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=False, crl_sign=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(san, critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                           critical=False)
            .sign(ca_priv, hashes.SHA256()))


def _load_ca(ca_pem: Path, ca_key: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    try:
        cert = x509.load_pem_x509_certificate(ca_pem.read_bytes())
    except (OSError, ValueError) as e:
        raise ConfigError(f"existing CA certificate {ca_pem} can't be used: {e}") from None
    try:
        priv = serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise ConfigError(f"existing CA key {ca_key} can't be used: {e}") from None
    pub = cert.public_key()
    if not isinstance(priv, ec.EllipticCurvePrivateKey) or not isinstance(pub, ec.EllipticCurvePublicKey) or \
            priv.public_key().public_numbers() != pub.public_numbers():
        raise ConfigError(f"{ca_key} is not the key of {ca_pem}")
    try:
        ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        raise ConfigError(f"{ca_pem} is not a CA made by 'cloudisense certs gen'") from None
    if not bc.ca or ski is None:
        raise ConfigError(f"{ca_pem} is not a CA certificate")
    if cert.not_valid_after_utc <= dt.datetime.now(dt.timezone.utc):
        raise ConfigError(f"CA certificate {ca_pem} has expired; make a new CA with force=True / --force")
    return cert, priv


def _key_pem(priv: ec.EllipticCurvePrivateKey) -> bytes:
    return priv.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())


def _write(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with exactly ``mode``; never through a symlink, never over an existing file."""
    create_new(path, data, mode)
