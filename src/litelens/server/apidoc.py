"""docs/api.md from the server's OpenAPI document, so the reference cannot drift from the code.

    python -m litelens.server.apidoc > docs/api.md

A test renders it again and compares. The live document is served at `/openapi.json` by every running
server, and `/docs` shows the same reference as a page of the dashboard (`operations` feeds both), with
nothing loaded from outside the server: FastAPI's own `/docs` pulls Swagger UI from a CDN, which a
self-hosted collector behind a firewall cannot reach.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

HEADER = """# Server API

Generated from the server's OpenAPI document by `python -m litelens.server.apidoc`; a running server
serves the same document at `/openapi.json` and this reference as a page at `/docs`. Every route needs
`Authorization: Bearer <project key>` unless the server runs with `--no-auth`, and sees only that
project's data. Errors are JSON objects `{"error": "<reason>"}` with a 4xx status (413 and 429 name the
limit; 503 carries `Retry-After`; a query parameter a route does not take is a 422 that names it, not
ignored); on `/v1/traces` they are the `google.rpc.Status` the OTLP spec asks
for, in the request's encoding (protobuf, or JSON that also carries `error`).

Times are Unix epoch seconds; durations are milliseconds; costs are US dollars. A cost that LiteLLM could
not work out is `null`, not 0: a call's `cost_usd`, and a session's or a bucket's when none of its calls
had one (`priced_calls` says how many had).
"""


def _type(schema: dict[str, Any]) -> str:
    if "anyOf" in schema:
        return " or ".join(_type(s) for s in schema["anyOf"] if s.get("type") != "null")
    if "enum" in schema:
        return " | ".join(f"`{v}`" for v in schema["enum"])
    if schema.get("type") == "array":
        return f"list of {_type(schema.get('items', {}))}"
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    return str(schema.get("type", "any"))


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


@dataclass(frozen=True)
class Parameter:
    name: str
    where: str
    type: str
    default: str
    description: str
    required: bool


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    description: str
    parameters: list[Parameter]
    body: list[str]
    responses: list[tuple[str, str]]

    @property
    def anchor(self) -> str:
        """A stable HTML id for the operation, e.g. `get-api-calls-call_id`."""
        words = "".join(c if c.isalnum() or c == "_" else " " for c in f"{self.method} {self.path}")
        return "-".join(words.lower().split())


def operations(document: dict[str, Any]) -> list[Operation]:
    """Every route of an OpenAPI document, in its order, with what a reader of the reference needs."""
    found = []
    for path, methods in document.get("paths", {}).items():
        for method, operation in methods.items():
            parameters = []
            for p in operation.get("parameters", []):
                schema = p.get("schema", {})
                default = schema.get("default")
                parameters.append(
                    Parameter(
                        name=p["name"],
                        where=p["in"],
                        type=_type(schema),
                        default="" if default is None else str(default),
                        description=p.get("description") or schema.get("description") or "",
                        required=bool(p.get("required")),
                    )
                )
            found.append(
                Operation(
                    method=method.upper(),
                    path=path,
                    summary=operation.get("summary") or "",
                    description=(operation.get("description") or "").strip(),
                    parameters=parameters,
                    body=list(operation.get("requestBody", {}).get("content", {})),
                    responses=[
                        (str(code), response.get("description", ""))
                        for code, response in operation.get("responses", {}).items()
                    ],
                )
            )
    return found


def render(document: dict[str, Any]) -> str:
    """The reference as Markdown (docs/api.md)."""
    out = [HEADER]
    for op in operations(document):
        out.append(f"## `{op.method} {op.path}`\n")
        if op.summary:
            out.append(f"{op.summary}.\n")
        if op.description:
            out.append(f"{op.description}\n")
        if op.parameters:
            out.append("| parameter | in | type | default | description |")
            out.append("|---|---|---|---|---|")
            for p in op.parameters:
                out.append(
                    f"| `{p.name}`{' (required)' if p.required else ''} | {p.where} | "
                    f"{_cell(p.type)} | {f'`{p.default}`' if p.default else ''} | {_cell(p.description)} |"
                )
            out.append("")
        if op.body:
            out.append(f"Request body: {', '.join(f'`{kind}`' for kind in op.body)}.\n")
        codes = ", ".join(f"{code} {_cell(description)}" for code, description in op.responses)
        if codes:
            out.append(f"Responses: {codes}.\n")
    return "\n".join(out).rstrip() + "\n"


def main() -> int:
    from litelens.server.app import create_app
    from litelens.server.config import ServerSettings

    app = create_app(ServerSettings(db_url="sqlite:///:memory:"))
    sys.stdout.write(render(app.openapi()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
