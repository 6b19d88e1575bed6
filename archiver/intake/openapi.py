"""The receiver's OpenAPI document (served at /openapi.json)."""

from __future__ import annotations

from typing import Any


def _answer(description: str, example: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"example": example}}}


def openapi_document(path: str, max_body_bytes: int) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "videosdk-archiver receiver", "version": "1"},
        "paths": {
            path: {"post": {
                "summary": "Receive a VideoSDK webhook",
                "parameters": [{"name": "videosdk-signature", "in": "header", "required": True,
                                "schema": {"type": "string"},
                                "description": "base64 RSA PKCS#1 v1.5 SHA-256 signature of the body"}],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["webhookType", "data"],
                    "properties": {"webhookType": {"type": "string"}, "data": {"type": "object"}}}}},
                    "description": f"at most {max_body_bytes} bytes"},
                "responses": {
                    "202": _answer("recorded: the event, its files and its copy jobs are committed in the ledger; the "
                                   "jobs are put on the broker after this answer",
                                   {"event_id": 1, "files": [{"file_id": 1, "file_path": "/encoded/videos/x.mp4"}],
                                    "jobs": [1, 2]}),
                    "200": _answer("recorded; nothing to archive", {"event_id": 2, "ignored": "session-started"}),
                    "400": _answer("malformed JSON or schema violation",
                                   {"error": "invalid webhook", "fields": ["data.fileUrl: required"]}),
                    "401": _answer("missing or bad signature", {"error": "signature mismatch"}),
                    "413": _answer("body too large", {"error": f"body larger than {max_body_bytes} bytes"}),
                    "415": _answer("not JSON", {"error": "Content-Type must be application/json"}),
                    "503": _answer("ledger unavailable, or the receiver at its connection cap; nothing recorded, retry",
                                   {"error": "the event could not be recorded; retry later"}),
                }}},
            "/healthz": {"get": {"summary": "process alive", "responses": {"200": {"description": "alive"}}}},
            "/readyz": {"get": {"summary": "ledger and webhook key usable (an unreachable broker is named, still 200)",
                                "responses": {"200": {"description": "ready"}, "503": {"description": "not"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text"}}}},
        },
    }
