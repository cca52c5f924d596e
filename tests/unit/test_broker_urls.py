"""broker.url names one broker or several servers of one cluster (issue 20: failover), and a bad
part is named, in TOML, on the command line and in the environment."""

import pytest

from cloudisense.node._config import broker_urls, load_settings, redacted
from cloudisense.node._errors import ConfigError

pytestmark = pytest.mark.timeout(10)


def test_a_toml_list_is_the_servers_in_order(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('id = "n1"\n[broker]\nurl = ["mqtt://a:1883", "mqtt://b:1884"]\n')
    assert broker_urls(load_settings(f).broker.url) == ["mqtt://a:1883", "mqtt://b:1884"]


def test_comma_separated_on_the_command_line_and_in_the_environment(monkeypatch):
    s = load_settings(None, {"id": "n1", "broker": {"url": "mqtt://a:1, mqtt://b:2"}})
    assert broker_urls(s.broker.url) == ["mqtt://a:1", "mqtt://b:2"]
    monkeypatch.setenv("CLOUDISENSE_BROKER__URL", "mqtt://c:3,mqtt://d:4")
    assert broker_urls(load_settings(None, {"id": "n1"}).broker.url) == ["mqtt://c:3", "mqtt://d:4"]


@pytest.mark.parametrize("url, named", [
    # the example: passed validation, then crashed at start-up (ValueError: Port could not be cast)
    ("mqtt://127.0.0.1:1,127.0.0.1:2", "URL 2 of 2 ('127.0.0.1:2') is not mqtt://HOST:PORT"),
    ("mqtt://127.0.0.1:1,mqtt://127.0.0.1:x", "URL 2 of 2 ('mqtt://127.0.0.1:x'): bad port"),
    ("mqtt://a:1,,mqtt://b:2", "URL 2 of 3 ('')"),
    ("mqtt://a:1,embedded", "'embedded' and 'none' stand alone"),
    ("mqtt://a:99999", "bad port"),
])
def test_a_bad_part_is_named(url, named):
    with pytest.raises(ConfigError) as e:
        load_settings(None, {"id": "n1", "broker": {"url": url}})
    assert named in e.value.message


def test_tls_files_need_every_server_on_mqtts():
    with pytest.raises(ConfigError) as e:
        load_settings(None, {"id": "n1", "broker": {"url": "mqtts://a:8883,mqtt://b:1883", "ca": "/x/ca.pem"}})
    assert "plaintext" in e.value.message


def test_passwords_in_every_url_are_redacted():
    s = load_settings(None, {"id": "n1", "broker": {"url": "mqtt://u:pw1@a:1,mqtt://v:pw2@b:2"}})
    shown = redacted(s)["broker"]["url"]
    assert "pw1" not in shown and "pw2" not in shown and shown.count("***") == 2
