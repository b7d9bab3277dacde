from pathlib import Path

import msgspec
from smsgate import config
from smsgate.config_reference import SECTIONS, render

DOC = Path(__file__).resolve().parents[2] / "docs" / "config.md"


def test_committed_reference_matches_the_structs() -> None:
    assert DOC.read_text() == render(), "run: python -m smsgate.config_reference > docs/config.md"


def test_every_key_is_documented_with_its_default() -> None:
    text = render()
    for _, struct in SECTIONS:
        for field in msgspec.structs.fields(struct):
            sub_table = field.name in ("users", "webhooks", "ports", "policy", "params")
            if sub_table and struct is not config.SimConfig:
                continue  # documented as a section of its own
            assert f"| `{field.name}` |" in text, (struct.__name__, field.name)
    assert '| `url` | str | `"nats://127.0.0.1:4222"` | several, comma-separated' in text
    assert "| `name` | str | **required** | login name |" in text
