"""A mistyped config key is named with the key the user probably meant."""

import pytest

from cloudisense.node._config import load_settings
from cloudisense.node._errors import ConfigError

pytestmark = pytest.mark.timeout(10)


def _message(tmp_path, toml: str) -> str:
    f = tmp_path / "c.toml"
    f.write_text(toml)
    with pytest.raises(ConfigError) as e:
        load_settings(f)
    return e.value.message


@pytest.mark.parametrize("toml, line", [
    ('[ws]\nlisen = "127.0.0.1:9000"\n', "ws.lisen: unknown key; did you mean `listen`?"),
    ('[brokr]\nurl = "none"\n', "brokr: unknown key; did you mean `broker`?"),
    ('[broker]\nprefx = "a/b"\n', "broker.prefx: unknown key; did you mean `prefix`?"),
    ('[[processes]]\nname = "x"\ncommand = ["true"]\nautostrat = false\n',
     "processes.0.autostrat: unknown key; did you mean `autostart`?"),
    ('[[auth.tokens]]\nsha256 = "' + "a" * 64 + '"\nrole = "viewer"\nnmae = "ann"\n',
     "auth.tokens.0.nmae: unknown key; did you mean `name`?"),
])
def test_unknown_key_suggests_the_close_one(tmp_path, toml, line):
    assert line in _message(tmp_path, toml)


def test_no_suggestion_when_nothing_is_close(tmp_path):
    msg = _message(tmp_path, '[system]\nzzzzqqq = 1\n')
    assert "system.zzzzqqq: unknown key" in msg and "did you mean" not in msg


def test_the_cli_log_level_variable_is_not_read_as_the_log_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """The README tour exports CLOUDISENSE_LOG=WARNING; the node must still start (it used to fail to parse it
    as the [log] table), and CLOUDISENSE_LOG__LEVEL still sets the table."""
    from cloudisense.node._config import load_settings

    monkeypatch.setenv("CLOUDISENSE_LOG", "WARNING")
    assert load_settings(None, {"id": "n1"}).log.level == ""
    monkeypatch.setenv("CLOUDISENSE_LOG__LEVEL", "DEBUG")
    assert load_settings(None, {"id": "n1"}).log.level == "DEBUG"
