"""A supervised process's environment is an allow-list; shown config hides secrets (pure)."""

from __future__ import annotations

import pytest

from cloudisense.node._config import DEFAULT_INHERIT_ENV, ConfigError, ProcessConfig, Settings, load_settings, redacted
from cloudisense.node._supervisor import child_env

pytestmark = pytest.mark.timeout(30)

NODE_ENV = {"PATH": "/usr/bin", "HOME": "/root", "LANG": "C.UTF-8", "LC_ALL": "C", "TZ": "UTC",
            "CLOUDISENSE_TOKEN": "t", "CLOUDISENSE_BROKER__PASSWORD": "p", "OPENAI_API_KEY": "k",
            "AWS_SECRET_ACCESS_KEY": "a", "GITHUB_TOKEN": "g", "DB_PASSWORD": "d", "SSH_AUTH_SOCK": "/s",
            "MY_COLOR": "blue", "OTHER": "o"}


def test_the_default_list_passes_what_programs_need_and_nothing_secret():
    env = child_env(ProcessConfig(name="p", command=["x"], env={"APP": "1"}), NODE_ENV)
    assert env == {"PATH": "/usr/bin", "HOME": "/root", "LANG": "C.UTF-8", "LC_ALL": "C", "TZ": "UTC",
                   "PYTHONUNBUFFERED": "1", "APP": "1"}


def test_patterns_never_match_a_secret_but_exact_names_do():
    cfg = ProcessConfig(name="p", command=["x"], inherit_env=["*", "GITHUB_TOKEN"])
    env = child_env(cfg, NODE_ENV)
    assert env["GITHUB_TOKEN"] == "g" and env["MY_COLOR"] == "blue" and env["OTHER"] == "o"
    for k in ("CLOUDISENSE_TOKEN", "CLOUDISENSE_BROKER__PASSWORD", "OPENAI_API_KEY", "AWS_SECRET_ACCESS_KEY",
              "DB_PASSWORD", "SSH_AUTH_SOCK"):
        assert k not in env, k


def test_own_env_wins_and_an_empty_list_inherits_nothing():
    cfg = ProcessConfig(name="p", command=["x"], inherit_env=[], env={"PATH": "/opt/bin"})
    assert child_env(cfg, NODE_ENV) == {"PATH": "/opt/bin", "PYTHONUNBUFFERED": "1"}
    assert "LC_*" in DEFAULT_INHERIT_ENV and "PATH" in DEFAULT_INHERIT_ENV


@pytest.mark.parametrize("name", ["a/b", "log+", "x#", "a\x01", "", "\u0085"])
def test_a_process_name_must_fit_in_a_topic_level(name):
    with pytest.raises(ConfigError, match="process"):
        load_settings(None, {"processes": [{"name": name, "command": ["x"]}]})


def test_redacted_hides_secrets_and_keeps_paths():
    s = Settings(id="x", broker={"url": "mqtts://u:hunter2@h:8883", "password": "pw", "ca": "/ca.pem",
                                 "cert": "/c.pem", "key": "/k.pem"},
                 security={"key": "/n.key", "trust": "/trust"},
                 auth={"tokens": [{"sha256": "a" * 64, "role": "viewer", "name": "dash"}]},
                 processes=[{"name": "p", "command": ["x", "--flag"], "env": {"MY_TOKEN": "t", "MODE": "m"}}])
    r = redacted(s)
    assert r["broker"]["url"] == "mqtts://u:***@h:8883"
    assert r["broker"]["password"] == "***"
    assert (r["broker"]["ca"], r["broker"]["cert"], r["broker"]["key"]) == ("/ca.pem", "/c.pem", "/k.pem")
    assert r["security"]["key"] == "/n.key"
    assert r["auth"]["tokens"] == [{"sha256": "***", "role": "viewer", "name": "dash"}]
    assert r["processes"][0]["env"] == {"MY_TOKEN": "***", "MODE": "m"}
    assert "hunter2" not in repr(r) and "pw'" not in repr(r) and "a" * 64 not in repr(r)
