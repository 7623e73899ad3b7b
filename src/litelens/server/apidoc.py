"""docs/api.md from the server's OpenAPI document, so the reference cannot drift from the code.

    python -m litelens.server.apidoc > docs/api.md

A test renders it again and compares. The live document is served at `/openapi.json` (and browsable at
`/docs`) by every running server.
"""

from __future__ import annotations

import sys
from typing import Any

HEADER = """# Server API

Generated from the server's OpenAPI document by `python -m litelens.server.apidoc`; a running server
serves the same document at `/openapi.json` and a browsable version at `/docs`. Every route needs
`Authorization: Bearer <project key>` unless the server runs with `--no-auth`, and sees only that
project's data. Errors are JSON objects `{"error": "<reason>"}` with a 4xx status (413 and 429 name the
limit; 503 carries `Retry-After`).

Times are Unix epoch seconds; durations are milliseconds; costs are US dollars.
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


def render(document: dict[str, Any]) -> str:
    out = [HEADER]
    for path, methods in document.get("paths", {}).items():
        for method, operation in methods.items():
            out.append(f"## `{method.upper()} {path}`\n")
            if operation.get("summary"):
                out.append(f"{operation['summary']}.\n")
            if operation.get("description"):
                out.append(f"{operation['description'].strip()}\n")
            parameters = operation.get("parameters", [])
            if parameters:
                out.append("| parameter | in | type | default | description |")
                out.append("|---|---|---|---|---|")
                for p in parameters:
                    schema = p.get("schema", {})
                    default = schema.get("default")
                    out.append(
                        f"| `{p['name']}`{' (required)' if p.get('required') else ''} | {p['in']} | "
                        f"{_cell(_type(schema))} | {'' if default is None else f'`{default}`'} | "
                        f"{_cell(p.get('description') or schema.get('description') or '')} |"
                    )
                out.append("")
            body = operation.get("requestBody", {}).get("content", {})
            if body:
                out.append(f"Request body: {', '.join(f'`{kind}`' for kind in body)}.\n")
            codes = ", ".join(
                f"{code} {_cell(response.get('description', ''))}"
                for code, response in operation.get("responses", {}).items()
            )
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
