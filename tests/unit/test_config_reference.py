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
            if isinstance(field.default, msgspec.Struct) or field.name in ("users", "webhooks"):
                continue
            if struct is config.AgentConfig and field.name in ("ports", "policy"):
                continue
            if struct is config.CallbackConfig and field.name == "params":
                continue
            assert f"| `{field.name}` |" in text, (struct.__name__, field.name)
    assert '| `url` | str | `"nats://127.0.0.1:4222"` | several, comma-separated' in text
    assert "| `name` | str | **required** | login name |" in text
