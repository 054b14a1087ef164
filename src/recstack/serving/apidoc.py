"""docs/api.md, generated from the OpenAPI document and the settings, so the reference cannot drift from
the server: `python -m recstack.serving.apidoc > docs/api.md` (a test checks the file matches).

Routes, parameters, bodies, answers and examples come from `create_app(...).openapi()`; limits and their
defaults from `Settings`; the prose on authentication and errors is here, next to the code it describes.
"""

from __future__ import annotations

import json
from typing import Any

from recstack.config import Settings

__all__ = ["render"]

_LIMITS = ("auth", "rate_limit_per_s", "rate_limit_burst", "key_cache_ttl_s", "max_body_bytes",
           "max_events_per_batch", "max_k", "max_id_length", "max_text_length", "cors_origins", "protect_metrics",
           "protect_docs")

_INTRO = """\
# HTTP API reference

Generated from the server's OpenAPI document (`/openapi.json`, browsable at `/docs`) by
`python -m recstack.serving.apidoc > docs/api.md`; `tests/unit/serving/test_api_doc.py` fails when this file
and the server disagree.

## Authentication

Every `/v1` route needs an API key, sent as `Authorization: Bearer <key>` or `X-API-Key: <key>`. Keys have
a scope, and each scope includes the ones before it:

| scope | may call |
| --- | --- |
| `read` | recommendations, similar items |
| `write` | the above, events, item and user upserts |
| `admin` | everything: model promotion and rollback, key management, and `/metrics` and `/docs` when protected |

```bash
recstack keys create --scope read --name web          # prints the key once; only its SHA-256 is stored
recstack keys create --scope write --name app --json  # {"id": "…", "key": "rk_…", "scope": "write"}
recstack keys list
recstack keys revoke ID                               # refused within key_cache_ttl_s on every server
```

No key, or an unknown or revoked one, is a `401` with `WWW-Authenticate: Bearer realm="recstack"`; a key
whose scope is too low is a `403`. `/healthz` and `/readyz` are always open (probes). Authentication is on
by default; `auth: none` (`RECSTACK_AUTH=none`) turns it off, and then every caller is an admin. `recstack
demo` creates a `write` key and prints it with the example requests.

## Limits

Each key has a token bucket: `rate_limit_per_s` requests a second, at most `rate_limit_burst` at once;
beyond it the answer is `429` with `Retry-After` (seconds). With a Redis cache the buckets live in Redis
(one atomic script), so every worker and replica shares them; otherwise each process has its own. Requests
without a valid key draw from their client address's bucket. A body over `max_body_bytes` is a `413`,
answered from `Content-Length` before the body is read (or as soon as a chunked body passes the limit).

| setting (`RECSTACK_…`) | default | meaning |
| --- | --- | --- |
"""

_ERRORS = """
## Errors

Every error answer, whatever its status, has one schema, `ErrorOut`: `detail` says what is wrong and names
the field (`query.k: …`, `body.events: …`, `user_id is missing`); `errors` lists each field of a request
that failed validation. A 5xx says only which kind of failure it was; its cause goes to the server log,
never to the client.

```json
{schema}
```

| status | when |
| --- | --- |
{statuses}

Every answer carries `X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY`, `Referrer-Policy:
no-referrer` and a `Content-Security-Policy` (`default-src 'none'` for the API, Swagger UI's assets only for
`/docs`). CORS is off unless `cors_origins` lists origins.

## Routes
"""


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _example(schema: dict[str, Any], components: dict[str, Any]) -> Any:
    if "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[1]]
    if schema.get("examples"):
        return schema["examples"][0]
    if schema.get("type") == "array" and "items" in schema:
        inner = _example(schema["items"], components)
        return None if inner is None else [inner]
    return schema.get("example")


def _type(schema: dict[str, Any]) -> str:
    if "anyOf" in schema:
        return " or ".join(_type(s) for s in schema["anyOf"])
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[1]
    kind = str(schema.get("type", "any"))
    bounds = [f"{k} {schema[k]}" for k in ("minimum", "maximum", "minLength", "maxLength", "maxItems") if k in schema]
    return kind + (f" ({', '.join(bounds)})" if bounds else "")


def _operation(path: str, method: str, op: dict[str, Any], components: dict[str, Any]) -> list[str]:
    lines = [f"### `{method.upper()} {path}`", "", op.get("description", op.get("summary", "")).strip(), ""]
    params = op.get("parameters", [])
    if params:
        lines += ["| parameter | in | type | default |", "| --- | --- | --- | --- |"]
        for p in params:
            param_schema = p.get("schema", {})
            lines.append(f"| `{p['name']}` | {p['in']} | {_cell(_type(param_schema))} | "
                         f"{_cell(param_schema.get('default', 'required' if p.get('required') else ''))} |")
        lines.append("")
    body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
    if body:
        examples = body.get("examples") or {}
        shown = [e["value"] for e in examples.values()] or [_example(body.get("schema", {}), components)]
        lines.append(f"Body (`application/json`): {_cell(_type(body.get('schema', {})))}.")
        lines += ["", "```json", *[json.dumps(e) for e in shown if e is not None], "```", ""]
    lines += ["| status | content | meaning |", "| --- | --- | --- |"]
    success_example: Any = None
    for status, answer in sorted(op.get("responses", {}).items()):
        content: dict[str, Any] = answer.get("content", {})
        media = ", ".join(f"`{m}`" for m in content) or "—"
        first: dict[str, Any] = next(iter(content.values()), {})
        schema: dict[str, Any] = first.get("schema", {})
        lines.append(f"| {status} | {media} {_cell(_type(schema)) if schema else ''} | "
                     f"{_cell(answer.get('description', ''))} |")
        if success_example is None and status.startswith("2"):
            success_example = first.get("example") or (_example(schema, components) if schema else None)
    lines += ["", "Example:", "", "```bash", _curl(path, method, op, body, components), "```"]
    if success_example is not None:
        text = success_example if isinstance(success_example, str) else json.dumps(success_example)
        lines += ["", "```", text.rstrip(), "```"]
    return lines


def _curl(path: str, method: str, op: dict[str, Any], body: dict[str, Any], components: dict[str, Any]) -> str:
    url = path
    for p in op.get("parameters", []):
        if p["in"] == "path":
            url = url.replace("{" + p["name"] + "}", str((p.get("schema", {}).get("examples") or ["x"])[0]))
    if "k" in {p["name"] for p in op.get("parameters", [])}:
        url += "?k=5"
    parts = ["curl"]
    if method != "get":
        parts += ["-X", method.upper()]
    if op.get("security"):
        parts += ["-H", "'Authorization: Bearer rk_…'"]
    if body:
        examples = body.get("examples") or {}
        value = next(iter(examples.values()))["value"] if examples else _example(body.get("schema", {}), components)
        parts += ["-H", "'Content-Type: application/json'", "-d", f"'{json.dumps(value)}'"]
    return " ".join([*parts, f"'localhost:8000{url}'"])


def render(document: dict[str, Any], settings: Settings | None = None) -> str:
    """The reference for `document` (an OpenAPI document of `create_app(settings)`)."""
    fields = Settings.model_fields
    defaults = Settings(auth="keys") if settings is None else settings
    out = [_INTRO.rstrip("\n")]
    for name in _LIMITS:
        value = getattr(defaults, name)
        out.append(f"| `{name}` | `{json.dumps(value)}` | {_cell(fields[name].description or '')} |")
    components = document.get("components", {}).get("schemas", {})
    error_schema = json.dumps(components["ErrorOut"], indent=2, sort_keys=True)
    statuses: dict[str, str] = {}
    for operations in document["paths"].values():
        for op in operations.values():
            for status, answer in op.get("responses", {}).items():
                if status.startswith(("4", "5")):
                    statuses.setdefault(status, answer.get("description", ""))
    out.append(_ERRORS.format(
        schema=error_schema,
        statuses="\n".join(f"| {s} | {_cell(statuses[s])} |" for s in sorted(statuses)),
    ).rstrip("\n"))
    for path, operations in document["paths"].items():
        for method, op in operations.items():
            out += ["", *_operation(path, method, op, components)]
    return "\n".join(out).rstrip("\n") + "\n"


def main() -> None:
    import sys

    from recstack.serving.app import create_app

    settings = Settings(auth="keys")
    sys.stdout.write(render(create_app(settings, model_source=None).openapi(), settings))


if __name__ == "__main__":
    main()
