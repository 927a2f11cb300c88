"""Every route of the HTTP API fuzzed from its OpenAPI document (schemathesis; the served
document equals the committed docs/openapi.json, tests/test_server.py): no input gives a 500,
and every error is the JSON error shape."""

from __future__ import annotations

import json

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from rag.keys import KeyStore
from rag.server import create_api

EXAMPLES = 25  # per route: bounded, so the suite stays quick


@pytest.fixture
def api(app, tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "leave.md").write_text("Employees get 25 days of paid annual leave.\n")
    app.ingestor().ingest([folder])
    return create_api(app, KeyStore(app.settings.home))


def test_no_route_answers_500_to_any_input(api):
    schema = schemathesis.openapi.from_asgi("/openapi.json", api)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    checked, calls = [], []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def call(case):
            response = case.call()
            calls.append(response.status_code)
            assert response.status_code != 500, (case.method, case.formatted_path, response.text)
            if response.status_code >= 400:
                error = json.loads(response.text)["error"]
                assert set(error) == {"type", "message"} and "Traceback" not in error["message"]

        call()
        checked.append(f"{operation.method.upper()} {operation.path}")
    assert "POST /v1/chat/completions" in checked and "GET /v1/models" in checked
    assert len(calls) >= 5 * len(operations) and 200 in calls
