"""docs/protocol.md embeds schemas generated from the models; fail when they drift."""

from pathlib import Path

import pytest

from cloudisense.node._docs import extract, render
from cloudisense.node._frames import INBOUND, parse_frame
from cloudisense.node import BadRequest

pytestmark = pytest.mark.timeout(30)
DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def test_doc_schemas_match_models():
    assert extract(DOC.read_text()) == render(), \
        "docs/protocol.md is out of date: regenerate with python -m cloudisense.node._docs"


def test_every_inbound_frame_documented():
    text = DOC.read_text()
    for name in INBOUND:
        assert f"#### `{name}`" in text


@pytest.mark.parametrize("raw,needle", [
    ("[1]", "JSON object"),
    ('{"id": 1}', "missing field 'type'"),
    ('{"type": "call", "id": 1, "service": "x"}', "missing field 'method'"),
    ('{"type": "call", "id": 1, "service": "x", "method": "y", "timeout": -1}', "timeout"),
    ('{"type": "call", "id": true, "service": "x", "method": "y"}', "id"),
    ('{"type": "subscribe", "id": 1}', "topic"),
])
def test_parse_errors_name_the_problem(raw, needle):
    with pytest.raises(BadRequest) as e:
        parse_frame(raw)
    assert needle in e.value.message


def test_parse_ignores_unknown_fields_and_keeps_id():
    f = parse_frame('{"type": "call", "id": "x", "service": "a", "method": "b", "extra": 1}')
    assert f.id == "x" and f.params is None and f.reply is True
    with pytest.raises(BadRequest) as e:
        parse_frame('{"type": "call", "id": "x9", "service": "a"}')
    assert e.value.request_id == "x9"
