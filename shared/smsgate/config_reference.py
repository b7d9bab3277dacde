"""The configuration reference, generated from the config Structs so it cannot drift.

Every key, its type, its default and its meaning (the comment beside the field in
config.py). `python -m smsgate.config_reference > docs/config.md`; a test keeps the
committed file equal to what this prints.
"""

from __future__ import annotations

import ast
import inspect
import sys
import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

import msgspec

from smsgate import config

SECTIONS: list[tuple[str, type[msgspec.Struct]]] = [
    ("nats", config.NatsConfig),
    ("api", config.ApiConfig),
    ("[api.users]", config.ApiUser),
    ("agent", config.AgentConfig),
    ("agent.policy", config.SendPolicy),
    ("[agent.ports]", config.AgentPort),
    ("agent.ports.policy", config.PolicyOverride),
    ("callback", config.CallbackConfig),
    ("callback.params", config.CallbackParams),
    ("[callback.webhooks]", config.Webhook),
    ("sim", config.SimConfig),
    ("history", config.HistoryConfig),
]


def _comments(struct: type) -> dict[str, str]:
    """Field name -> the comment on its line (or on the lines just above it)."""
    source = inspect.getsource(struct)
    lines = source.splitlines()
    found: dict[str, str] = {}
    for node in ast.parse(source).body[0].body:  # type: ignore[attr-defined]
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            start, end = node.lineno - 1, (node.end_lineno or node.lineno) - 1
            trailing = [ln.split("  # ", 1)[1] for ln in lines[start : end + 1] if "  # " in ln]
            above: list[str] = []
            i = start - 1
            while i >= 0 and lines[i].strip().startswith("#"):
                above.insert(0, lines[i].strip().lstrip("# "))
                i -= 1
            found[node.target.id] = " ".join(above + trailing)
    return found


def _type_name(hint: Any) -> str:
    origin, args = get_origin(hint), get_args(hint)
    if origin is Annotated:
        return _type_name(args[0])
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin is Literal:
        return " or ".join(f'"{a}"' for a in args)
    if origin in (list, tuple, dict):
        inner = ", ".join(_type_name(a) for a in args if a is not Ellipsis)
        return f"{origin.__name__}[{inner}]"
    if hint is type(None):
        return "none"
    return str(getattr(hint, "__name__", hint))


def _default(field: msgspec.structs.FieldInfo) -> str:
    if field.required:
        return "**required**"
    if field.default is not msgspec.NODEFAULT:
        value = field.default
    elif field.default_factory is not msgspec.NODEFAULT:
        value = field.default_factory()
    else:
        return ""
    if isinstance(value, msgspec.Struct):
        return "(table)"
    if isinstance(value, list) and value and isinstance(value[0], msgspec.Struct):
        return "[]"
    return f"`{msgspec.json.encode(value).decode()}`"


def render() -> str:
    out = [
        "# Configuration reference",
        "",
        "Generated from `shared/smsgate/config.py` by `python -m smsgate.config_reference`.",
        "Every key has the default shown unless marked required. `SMSGATE_<SECTION>_<KEY>`",
        "environment variables override top-level keys of a section (e.g. `SMSGATE_NATS_URL`).",
        "Durations are seconds.",
        "",
    ]
    for section, struct in SECTIONS:
        hints = get_type_hints(struct, include_extras=True)
        comments = _comments(struct)
        doc = (struct.__doc__ or "").strip().splitlines()
        out += [f"## `[{section}]`", ""]
        if doc:
            out += [doc[0], ""]
        out += ["| key | type | default | meaning |", "|---|---|---|---|"]
        for field in msgspec.structs.fields(struct):
            if isinstance(field.default, msgspec.Struct) or (
                field.default_factory is not msgspec.NODEFAULT
                and isinstance(field.default_factory(), msgspec.Struct)
            ):
                continue  # a sub-table, documented as its own section
            if field.name == "ports" and struct is config.AgentConfig:
                continue
            if field.name in ("users", "webhooks"):
                continue
            meaning = comments.get(field.name, "").replace("|", "\\|")
            kind = _type_name(hints[field.name])
            out.append(f"| `{field.name}` | {kind} | {_default(field)} | {meaning} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(render())
