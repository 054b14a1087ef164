"""docs/api.md is the generated reference of the server as it is: regenerate it with
`python -m recstack.serving.apidoc > docs/api.md` when this fails."""

from __future__ import annotations

from pathlib import Path

from recstack.config import Settings
from recstack.serving.apidoc import render
from recstack.serving.app import create_app

DOC = Path(__file__).resolve().parents[3] / "docs" / "api.md"


def test_docs_api_md_matches_the_openapi_document(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, auth="keys")
    document = create_app(settings, model_source=None).openapi()
    assert DOC.read_text() == render(document, Settings(auth="keys")), (
        "docs/api.md is stale: python -m recstack.serving.apidoc > docs/api.md"
    )


def test_the_document_has_no_dangling_reference_and_an_example_everywhere(tmp_path: Path) -> None:
    document = create_app(Settings(home=tmp_path, auth="keys"), model_source=None).openapi()
    schemas = document["components"]["schemas"]
    text = str(document)
    for name in {part.split("'")[0] for part in text.split("#/components/schemas/")[1:]}:
        assert name in schemas, f"dangling $ref to {name}"
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, answer in operation["responses"].items():
                content = answer.get("content", {})
                assert content, (method, path, status)
                if status.startswith("4"):
                    assert content == {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}
            ok = next(a for s, a in operation["responses"].items() if s.startswith("2"))
            media, body = next(iter(ok["content"].items()))
            ref = body["schema"].get("$ref") or body["schema"].get("items", {}).get("$ref")
            example = body.get("example") or (ref and schemas[ref.rsplit("/", 1)[1]].get("examples"))
            assert example, f"{method} {path}: no example for its {media} answer"
    assert "text/plain" in document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
