"""Files written with secrets: never through a symlink, never wider than meant, whatever the umask.

Issue 16: ``certs gen`` followed a dangling symlink in its output directory
(it opened without ``O_EXCL``), directories were made with the umask's mode
and the audit log was 0644.  Each test plants the trap first, then runs the
writer as an operator would and checks what is on disk.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from cloudisense.agent import AuditLog
from cloudisense.agent.pending import PendingStore
from cloudisense.agent._plan import Fact, Plan, PlanStep
from cloudisense.node._certs import generate_certs
from cloudisense.node._files import UnsafePath, create_new, open_append, private_dir
from cloudisense.node._signing import generate_keypair
from cloudisense.node.cli import main as cli

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def umask0():
    """The loosest umask an operator's shell might have: every mode below must still be exact."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def mode(p: Path) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)


def plan() -> Plan:
    step = PlanStep(index=1, node="n1", service="supervisor", method="restart", params={"name": "logger"},
                    reason="test", fact=Fact(targets=["n1"], online={"n1": True}, why="named explicitly: n1"))
    return Plan(request="restart logger on n1", steps=[step]).seal()


# ---- certs gen ---------------------------------------------------------------------------------

def test_certs_gen_refuses_a_dangling_symlink_and_never_creates_its_target(tmp_path, capsys):
    out, victim = tmp_path / "certs", tmp_path / "elsewhere" / "victim.key"
    out.mkdir()
    victim.parent.mkdir()
    (out / "node-a.key").symlink_to(victim)  # dangling: victim does not exist

    code = cli(["certs", "gen", "--out", str(out), "--nodes", "node-a"])

    assert code != 0
    assert "node-a.key" in capsys.readouterr().err
    assert not victim.exists(), "certs gen wrote a private key through the symlink"
    assert os.path.islink(out / "node-a.key")
    assert not (out / "ca.key").exists()  # refused before writing anything


def test_certs_gen_force_replaces_the_symlink_itself_not_its_target(tmp_path):
    out, victim = tmp_path / "certs", tmp_path / "victim.key"
    out.mkdir()
    (out / "node-a.key").symlink_to(victim)
    (out / "ca.pem").symlink_to(tmp_path / "victim.pem")

    generate_certs(out, ["node-a"], force=True)

    assert not victim.exists() and not (tmp_path / "victim.pem").exists()
    assert not os.path.islink(out / "node-a.key") and not os.path.islink(out / "ca.pem")
    assert b"PRIVATE KEY" in (out / "node-a.key").read_bytes()


def test_certs_gen_race_a_symlink_planted_after_the_check_is_refused(tmp_path):
    """The exclusive create is what protects, not the existence check before it."""
    victim = tmp_path / "victim"
    (tmp_path / "x.key").symlink_to(victim)
    with pytest.raises(FileExistsError):
        create_new(tmp_path / "x.key", b"secret", 0o600)
    assert not victim.exists()


def test_certs_gen_modes_are_exact_under_umask_0(tmp_path, umask0):
    out = tmp_path / "new" / "certs"
    files = generate_certs(out, ["node-a"])
    assert mode(out) == 0o755  # shared on purpose (the broker's user reads broker.key); each key is 0600
    for name, p in files.items():
        assert mode(p) == (0o600 if name.endswith(".key") else 0o644), name


# ---- keys gen ----------------------------------------------------------------------------------

def test_keys_gen_refuses_a_dangling_symlink(tmp_path):
    victim = tmp_path / "victim.key"
    (tmp_path / "node-a.key").symlink_to(victim)
    with pytest.raises(FileExistsError):
        generate_keypair("node-a", tmp_path)
    assert not victim.exists()


def test_keys_gen_modes_are_exact_under_umask_0(tmp_path, umask0):
    key, pub = generate_keypair("node-a", tmp_path / "keys")
    assert (mode(key), mode(pub), mode(tmp_path / "keys")) == (0o600, 0o644, 0o700)


# ---- audit log ----------------------------------------------------------------------------------

def test_audit_log_is_0600_in_a_0700_directory_under_umask_0(tmp_path, umask0):
    path = tmp_path / "state" / "audit.jsonl"
    AuditLog(path).write("request", request="x")
    assert (mode(path), mode(path.parent)) == (0o600, 0o700)


def test_audit_log_made_0644_by_an_older_version_is_tightened(tmp_path):
    path = tmp_path / "audit.jsonl"
    path.write_text("")
    path.chmod(0o644)
    AuditLog(path).write("request", request="x")
    assert mode(path) == 0o600


def test_audit_log_never_writes_through_a_symlink(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("untouched\n")
    (tmp_path / "audit.jsonl").symlink_to(victim)
    with pytest.raises(UnsafePath, match="symlink"):
        AuditLog(tmp_path / "audit.jsonl").write("request", request="x")
    assert victim.read_text() == "untouched\n"


def test_audit_log_refuses_a_fifo_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "audit.jsonl")
    with pytest.raises(UnsafePath, match="not a regular file"):
        AuditLog(tmp_path / "audit.jsonl").write("request", request="x")


# ---- pending plans -------------------------------------------------------------------------------

def test_plan_files_and_state_dir_modes_are_exact_under_umask_0(tmp_path, umask0):
    store = PendingStore(tmp_path / "state")
    rec = store.add(plan())
    assert mode(tmp_path / "state") == 0o700
    assert mode(store.dir) == 0o700
    assert mode(store.dir / f"{rec.id}.json") == 0o600
    assert mode(store.dir / f"{rec.id}.lock") == 0o600
    store.reject(rec.id)  # a rewrite keeps the mode
    assert mode(store.dir / f"{rec.id}.json") == 0o600


# ---- the helpers themselves ---------------------------------------------------------------------

def test_private_dir_creates_0700_and_leaves_parents_alone(tmp_path, umask0):
    d = private_dir(tmp_path / "a" / "b")
    assert mode(d) == 0o700
    assert (tmp_path / "a").is_dir()


def test_open_append_creates_0600_and_appends(tmp_path, umask0):
    p = tmp_path / "log"
    for line in (b"one\n", b"two\n"):
        fd = open_append(p)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
    assert p.read_bytes() == b"one\ntwo\n" and mode(p) == 0o600
