"""The OpenAPI 3.1 document of every route, and `/docs`: a plain page generated from it.

Body schemas come from the msgspec Structs the routes decode and encode, so the
document cannot drift from the code that validates requests.
"""

from __future__ import annotations

import html
from typing import Any

import msgspec
from smsgate.contracts import ControlReply
from smsgate.history.records import MessagePage
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from smsgate_api import console, history, params, sendsms_reply, settings, v1
from smsgate_api.web import ErrorBody

_REF = "#/components/schemas/{name}"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(name=name)}


def _json(schema: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


def _gateway_response(description: str, error: bool) -> dict[str, Any]:
    return {
        "description": description + " (in the requested report format; NO: empty body)",
        "content": {
            "application/json": {"schema": _ref("ErrorReport" if error else "Report")},
            "text/plain": {"schema": {"type": "string"}},
        },
    }


_GATEWAY_FIELDS: list[tuple[str, dict[str, Any], str]] = [
    ("username", {"type": "string"}, "User name (or use HTTP Basic)."),
    ("password", {"type": "string"}, "Password (or use HTTP Basic)."),
    (
        "phonenumber",
        {"type": "string", "examples": ["10086,10087"]},
        "Recipients, comma-separated; the name is matched in any case "
        "(`phoneNumber`); `onenumber` is an alias.",
    ),
    ("message", {"type": "string"}, "UTF-8 text, any script, up to the configured parts."),
    (
        "port",
        {"type": "string", "examples": ["lte-3", "3", "2,3", "any"]},
        "Port name, gateway number or comma-separated list; `any` or none: any ready port.",
    ),
    (
        "report",
        {
            "type": "string",
            "pattern": "^ *([Jj][Ss][Oo][Nn]|[Ss][Tt][Rr][Ii][Nn][Gg]|[Nn][Oo])? *$",
            "examples": ["JSON", "String", "NO"],
        },
        "Report format JSON, String or NO in any case; default from config.",
    ),
    (
        "timeout",
        {"type": "number", "minimum": 0},
        "Seconds to wait for send results (capped by config); 0 answers at once.",
    ),
    (
        "id",
        {"type": "string", "pattern": params.ID_PATTERN, "maxLength": params.MAX_ID_LENGTH},
        "Your message id; echoed, and a repeat with the same id is not queued twice.",
    ),
    (
        "dr",
        {"type": "string", "enum": ["", "0", "1", "no", "yes", "false", "true", "off", "on"]},
        "0 to ask for no delivery report (any case).",
    ),
]

_GATEWAY_ERRORS = {
    "400": _gateway_response("A parameter is missing or wrong; the message says which", True),
    "401": _gateway_response("Wrong or missing credentials", True),
    "403": _gateway_response("Port not allowed for this user, or HTTP sending is off", True),
    "409": _gateway_response("The id was used before for another recipient or text", True),
    "415": _gateway_response("A body that is not a form (application/x-www-form-urlencoded)", True),
    "429": _gateway_response("Too many failed logins from this client; see Retry-After", True),
    "503": _gateway_response("The send queue is full or NATS is unreachable; retry later", True),
}

_V1_ERRORS = {
    "400": _json("ErrorBody", "The request is malformed; the message says what to fix"),
    "401": _json("ErrorBody", "Wrong or missing credentials"),
    "429": _json("ErrorBody", "Too many failed logins from this client"),
    "503": _json("ErrorBody", "NATS is unreachable or the queue is full; retry later"),
}

_SECURITY: list[dict[str, list[str]]] = [{"bearerAuth": []}, {"basicAuth": []}]


def _gateway_operation(method: str) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": "Send an SMS (hardware-gateway compatible)",
        "operationId": f"sendsms_{method}",
        "tags": ["gateway"],
        "responses": {"200": _gateway_response("One record per recipient", False)}
        | _GATEWAY_ERRORS,
        "security": [{}, {"basicAuth": []}],
    }
    if method == "get":
        operation["parameters"] = [
            {"name": name, "in": "query", "schema": schema, "description": text}
            for name, schema, text in _GATEWAY_FIELDS
        ]
    else:
        operation["requestBody"] = {
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            name: schema | {"description": text}
                            for name, schema, text in _GATEWAY_FIELDS
                        },
                    }
                }
            }
        }
    return operation


def _v1(
    summary: str,
    operation_id: str,
    responses: dict[str, Any],
    *,
    body: str | None = None,
    parameters: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "operationId": operation_id,
        "tags": ["v1"],
        "security": _SECURITY,
        "responses": responses | _V1_ERRORS,
    }
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    if parameters:
        operation["parameters"] = parameters
    return operation


def _path_param(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _plain(description: str, media: str = "text/plain") -> dict[str, Any]:
    return {"description": description, "content": {media: {"schema": {"type": "string"}}}}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": schema, "description": description}


def _history_parameters(*, inbound: bool) -> list[dict[str, Any]]:
    text = {"type": "string"}
    found = [
        _query("number", text, "The other party (recipient or sender), however written"),
        _query("port", text, "Port names or numbers (comma-separated)"),
        _query("sim", text, "The SIM's IMSI"),
        _query("user", text, "The user who sent it (an admin sees every user's)"),
        _query(
            "state",
            text,
            "Comma-separated: queued, sending, sent, failed, unknown, delivered, undelivered, "
            "expired, received, unmatched",
        ),
        _query("since", text, "Created at or after: ISO 8601 or Unix seconds"),
        _query("until", text, "Created before: ISO 8601 or Unix seconds"),
        _query("q", text, "Text contains this (case-insensitive)"),
        _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "Page size (50)"),
        _query("cursor", text, "`next` of the previous page"),
        _query(
            "format",
            {"type": "string", "enum": ["json", "csv", "jsonl"]},
            "json: one page; csv or jsonl: every match, streamed",
        ),
    ]
    if not inbound:
        direction = {"type": "string", "enum": ["out", "in"]}
        found.insert(0, _query("direction", direction, "out (sent) or in (received)"))
    return found


def _history_listing(summary: str, operation_id: str, *, inbound: bool) -> dict[str, Any]:
    page = _json("MessagePage", "A page, newest first; `next` continues")
    page["content"] |= {
        "text/csv": {"schema": {"type": "string"}},
        "application/x-ndjson": {"schema": {"type": "string"}},
    }
    return _v1(
        summary,
        operation_id,
        {"200": page, "404": _json("ErrorBody", "The history is switched off")},
        parameters=_history_parameters(inbound=inbound),
    )


def _console_paths() -> dict[str, Any]:
    """The web console: its page, its assets, sessions, settings and its live stream."""
    session = {
        "200": _json("SessionInfo", "The logged-in user; `csrf` goes in X-CSRF-Token"),
    }
    login_body = {"schema": _ref("Login")}
    return {
        "/": {
            "get": {
                "summary": "The web console",
                "operationId": "console",
                "tags": ["console"],
                "responses": {"200": _plain("The console's page", "text/html")},
            }
        },
        "/console/{name}": {
            "get": {
                "summary": "A script or style sheet of the console",
                "operationId": "console_asset",
                "tags": ["console"],
                "parameters": [_path_param("name", {"type": "string"})],
                "responses": {
                    "200": {
                        "description": "The file",
                        "content": {
                            "text/javascript": {"schema": {"type": "string"}},
                            "text/css": {"schema": {"type": "string"}},
                        },
                    },
                    "304": {"description": "Unchanged (If-None-Match)"},
                    "404": _plain("No such file"),
                },
            }
        },
        "/api/v1/session": {
            "get": _v1("Who is logged in (session cookie, Basic or Bearer)", "session", session),
            "post": {
                "summary": "Log in: sets the console's session cookie",
                "operationId": "log_in",
                "tags": ["console"],
                "security": [],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": login_body,
                        "application/x-www-form-urlencoded": login_body,
                    },
                },
                "responses": session
                | {
                    "403": _json("ErrorBody", "Sent from another site's page"),
                    "413": _json("ErrorBody", "The body is too large for a login"),
                }
                | _V1_ERRORS,
            },
            "delete": {
                "summary": "Log out: clears the session cookie",
                "operationId": "log_out",
                "tags": ["console"],
                "security": [],
                "responses": {"204": {"description": "Logged out"}},
            },
        },
        "/api/v1/settings": {
            "get": _v1(
                "The settings this API runs with, read-only and without secrets",
                "settings",
                {"200": _json("SettingsView", "HTTP to SMS, CORS, users, callbacks")},
            )
        },
        "/api/v1/console/stream": {
            "get": _v1(
                "Server-Sent Events for the console: health, port changes, traffic",
                "console_stream",
                {
                    "200": _plain(
                        "`event:` health | ports | traffic, `data:` JSON", "text/event-stream"
                    )
                },
            )
        },
    }


def build() -> dict[str, Any]:
    """The OpenAPI document."""
    _, components = msgspec.json.schema_components(
        [
            v1.SendRequest,
            v1.SendResponse,
            v1.PortList,
            v1.UssdBody,
            history.MessageDetail,
            MessagePage,
            ControlReply,
            ErrorBody,
            sendsms_reply.Report,
            sendsms_reply.ErrorReport,
            console.SessionInfo,
            console.Login,
            settings.SettingsView,
        ],
        ref_template=_REF,
    )
    not_found = {"404": _json("ErrorBody", "No such message or port (for this user)")}
    control = {
        "200": _json("ControlReply", "The agent did it"),
        "403": _json("ErrorBody", "The port is not allowed for this user"),
        "409": _json("ControlReply", "The agent refused; `error` says why"),
        "502": _json("ErrorBody", "The agent's answer was unreadable"),
        "504": _json("ErrorBody", "The agent did not answer in time"),
    } | not_found
    health = {"type": "object", "properties": {"status": {"type": "string"}}}
    paths: dict[str, Any] = {
        "/sendsms": {"get": _gateway_operation("get"), "post": _gateway_operation("post")},
        "/api/v1/messages": {
            "post": _v1(
                "Send a text to one or more numbers (all queued or none)",
                "send_message",
                {
                    "202": _json("SendResponse", "Queued (or results, with `wait`)"),
                    "403": _json("ErrorBody", "Port not allowed, or HTTP sending is off"),
                    "409": _json("ErrorBody", "The id was used before for another message"),
                },
                body="SendRequest",
            ),
            "get": _history_listing(
                "Search the message history (sent and received)", "list_messages", inbound=False
            ),
        },
        "/api/v1/messages/{id}": {
            "get": _v1(
                "A message's status and history: state, port, parts, delivery, text, timeline",
                "get_message",
                {"200": _json("MessageDetail", "The latest status and the timeline")} | not_found,
                parameters=[_path_param("id", {"type": "string", "maxLength": 128})],
            )
        },
        "/api/v1/inbox": {
            "get": _history_listing("Received messages", "inbox", inbound=True),
        },
        "/api/v1/ports": {
            "get": _v1(
                "Live port states (down when heartbeats stopped)",
                "list_ports",
                {"200": _json("PortList", "The ports this user may use")},
            )
        },
        "/api/v1/ports/{name}/{action}": {
            "post": _v1(
                "Disable, enable or drain a port",
                "port_action",
                control,
                parameters=[
                    _path_param("name", {"type": "string"}),
                    _path_param(
                        "action", {"type": "string", "enum": ["disable", "enable", "drain"]}
                    ),
                ],
            )
        },
        "/api/v1/ussd": {
            "post": _v1(
                "Run a USSD code on a port and return the network's answer",
                "ussd",
                control,
                body="UssdBody",
            )
        },
        "/api/v1/events": {
            "get": _v1(
                "Server-Sent Events of the event stream; resumable with Last-Event-ID",
                "events",
                {
                    "200": _plain(
                        "`id:` stream sequence, `event:` type, `data:` event JSON",
                        "text/event-stream",
                    ),
                    "403": _json("ErrorBody", "A port asked for is not allowed"),
                },
                parameters=[
                    {
                        "name": "type",
                        "in": "query",
                        "schema": {"type": "string"},
                        "description": "result, report, inbound, port (comma-separated)",
                    },
                    {
                        "name": "port",
                        "in": "query",
                        "schema": {"type": "string"},
                        "description": "Port names or numbers (comma-separated)",
                    },
                    {
                        "name": "since",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 0},
                        "description": "Resume after this stream sequence",
                    },
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "schema": {"type": "integer", "minimum": 0},
                    },
                ],
            )
        },
        **_console_paths(),
        "/healthz": {
            "get": {
                "summary": "The process is alive",
                "operationId": "healthz",
                "tags": ["operations"],
                "responses": {
                    "200": {
                        "description": "Alive",
                        "content": {"application/json": {"schema": health}},
                    }
                },
            }
        },
        "/readyz": {
            "get": {
                "summary": "NATS is connected and the streams exist",
                "operationId": "readyz",
                "tags": ["operations"],
                "responses": {
                    code: {"description": text, "content": {"application/json": {"schema": health}}}
                    for code, text in (("200", "Ready"), ("503", "Not ready"))
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "operationId": "metrics",
                "tags": ["operations"],
                "responses": {"200": _plain("Prometheus text format 0.0.4")},
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "operationId": "openapi",
                "tags": ["operations"],
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
        "/docs": {
            "get": {
                "summary": "A readable list of the routes",
                "operationId": "docs",
                "tags": ["operations"],
                "responses": {"200": _plain("HTML", "text/html")},
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "smsgate API",
            "version": "1",
            "description": "HTTP-to-SMS for SIM farms: the hardware gateway's /sendsms and a JSON "
            "API under /api/v1.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "basicAuth": {"type": "http", "scheme": "basic"},
                "bearerAuth": {"type": "http", "scheme": "bearer"},
            },
        },
    }


def docs_page(spec: dict[str, Any]) -> str:
    """A self-contained HTML page listing every operation and its parameters."""
    rows: list[str] = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            names = [p["name"] for p in operation.get("parameters", [])]
            body = operation.get("requestBody", {}).get("content", {})
            for media in body.values():
                ref = media["schema"].get("$ref", "")
                names.append(ref.rsplit("/", 1)[-1] or ", ".join(media["schema"]["properties"]))
            codes = ", ".join(operation["responses"])
            rows.append(
                "<tr><td><code>{}</code></td><td><code>{}</code></td><td>{}</td>"
                "<td>{}</td><td>{}</td></tr>".format(
                    method.upper(),
                    html.escape(path),
                    html.escape(operation["summary"]),
                    html.escape(", ".join(names)),
                    codes,
                )
            )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>smsgate API</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:.3em .8em;"
        "border-bottom:1px solid #ddd;text-align:left;vertical-align:top}</style></head><body>"
        f"<h1>{html.escape(spec['info']['title'])}</h1><p>{html.escape(spec['info']['description'])}"
        " The full document: <a href='/openapi.json'>/openapi.json</a>.</p>"
        "<table><tr><th>Method</th><th>Path</th><th>What</th><th>Parameters</th>"
        "<th>Statuses</th></tr>" + "".join(rows) + "</table></body></html>"
    )


_SPEC = build()
_SPEC_BODY = msgspec.json.encode(_SPEC)
_DOCS = docs_page(_SPEC)


async def openapi_json(request: Request) -> Response:
    return Response(_SPEC_BODY, media_type="application/json")


async def docs(request: Request) -> Response:
    return HTMLResponse(_DOCS)
