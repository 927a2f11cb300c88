"""The HTTP API over a fake-model App: routes, key isolation on every route, SSE and the
OpenAI-compatible route, JSON errors, and the committed OpenAPI document."""

from __future__ import annotations

import json
import time

import pytest
from fastapi.testclient import TestClient

from rag.app import build_app
from rag.keys import KeyStore
from rag.server import create_api, document_id
from tests.conftest import ROOT

LEAVE = "Employees get 25 days of paid annual leave per year.\n"
ROBOT = "The K2 robot charges in 90 minutes on its dock.\n"


@pytest.fixture
def served(app, tmp_path):
    """Two collections (hr, robots) with one document each, and the API over them."""
    for name, text in (("staff", LEAVE), ("robots", ROBOT)):
        folder = tmp_path / name
        folder.mkdir()
        (folder / f"{name}.md").write_text(text)
        app.ingestor().ingest([folder], name)
    keys = KeyStore(app.settings.home)
    return app, keys, TestClient(create_api(app, keys), raise_server_exceptions=False)


def wait_ready(client: TestClient):
    """/readyz answers 503 while the models load, then 200."""
    deadline = time.monotonic() + 30
    while True:
        response = client.get("/readyz")
        if response.status_code == 200 or time.monotonic() > deadline:
            return response
        assert response.json()["error"]["type"] == "not_ready"
        time.sleep(0.05)


@pytest.fixture
def staff_api(app, tmp_path):
    """One collection (staff) with one document; makes the API over it with the given options."""
    folder = tmp_path / "staff"
    folder.mkdir()
    (folder / "staff.md").write_text(LEAVE)
    app.ingestor().ingest([folder], "staff")
    return lambda **options: TestClient(create_api(app, KeyStore(app.settings.home), **options))


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def test_open_server_answers_searches_and_lists(served):
    _, _, client = served
    assert client.get("/healthz").json() == {"status": "ok"}
    assert wait_ready(client).json()["status"] == "ready"
    models = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert {"staff", "robots"} <= set(models)
    found = client.post("/v1/collections/staff/search", json={"query": "annual leave"}).json()
    assert found["passages"][0]["text"].startswith("Employees get 25 days")
    answer = client.post("/v1/collections/staff/ask", json={"question": "How much leave?"}).json()
    assert answer["answer"] == "The answer is in the sources [1]."
    assert answer["sources"][0]["file"].endswith("staff.md") and answer["refused"] is False
    assert "refusal_reason" in answer
    docs = client.get("/v1/collections/staff/documents").json()["documents"]
    assert [d["file"].rsplit("/", 1)[-1] for d in docs] == ["staff.md"]
    assert docs[0]["id"] == document_id(docs[0]["file"])


def test_upload_list_and_delete(served):
    app, _, client = served
    files = [("files", ("../../etc/notes.md", b"Parking is free for staff.\n", "text/markdown"))]
    files.append(("files", ("empty.txt", b"   \n", "text/plain")))
    report = client.post("/v1/collections/staff/documents", files=files).json()
    assert report["files"] == 1 and report["collection"] == "staff"
    first, empty = report["documents"]
    assert first["name"] == "../../etc/notes.md" and first["outcome"] == "stored"
    assert first["chunks"] >= 1 and len(first["id"]) == 16
    assert empty["name"] == "empty.txt" and empty["outcome"] == "skipped" and empty["reason"]
    uploads = app.settings.home / "uploads" / "staff"
    stored = [p for p in uploads.rglob("*") if p.is_file()]
    assert sorted(p.name for p in stored) == ["empty.txt", "notes.md"]
    assert all(uploads in p.parents for p in stored)  # the name never leaves the uploads folder
    docs = client.get("/v1/collections/staff/documents").json()["documents"]
    uploaded = next(d for d in docs if "uploads" in d["file"] and d["status"] == "stored")
    gone = client.delete(f"/v1/collections/staff/documents/{uploaded['id']}")
    assert gone.status_code == 200 and gone.json()["removed"] == 1
    after = client.get("/v1/collections/staff/documents").json()["documents"]
    assert all("uploads" not in d["file"] for d in after if d["status"] == "stored")
    missing = client.delete("/v1/collections/staff/documents/0000000000000000")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found"


def test_each_key_sees_only_its_collections_on_every_route(served):
    _, keys, client = served
    _, hr = keys.create(["staff"])
    _, robots = keys.create(["robots"])
    _, reader = keys.create(["staff"], read_only=True)
    assert client.get("/healthz").status_code == 200  # no key needed
    assert client.get("/v1/models").status_code == 401
    assert client.get("/v1/models", headers=bearer("rag_xx_wrong")).status_code == 401
    assert [m["id"] for m in client.get("/v1/models", headers=bearer(hr)).json()["data"]] == [
        "staff"
    ]
    upload = [("files", ("a.md", b"Some text about nothing much.\n", "text/markdown"))]
    routes = [
        ("get", "/v1/collections/{c}/documents", {}),
        ("post", "/v1/collections/{c}/documents", {"files": upload}),
        ("delete", "/v1/collections/{c}/documents/" + "0" * 16, {}),
        ("post", "/v1/collections/{c}/search", {"json": {"query": "leave"}}),
        ("post", "/v1/collections/{c}/ask", {"json": {"question": "leave?"}}),
        ("post", "/v1/collections/{c}/ask", {"json": {"question": "leave?", "stream": True}}),
    ]
    for method, path, kwargs in routes:
        own = getattr(client, method)(path.format(c="staff"), headers=bearer(hr), **kwargs)
        other = getattr(client, method)(path.format(c="robots"), headers=bearer(hr), **kwargs)
        assert own.status_code in (200, 404) and own.status_code != 401, (path, own.text)
        assert other.status_code == 404, (method, path, other.text)
        assert other.json()["error"]["type"] == "not_found"
        assert "K2" not in other.text
        back = getattr(client, method)(path.format(c="staff"), headers=bearer(robots), **kwargs)
        assert back.status_code == 404, (method, path)
    chat = {"model": "robots", "messages": [{"role": "user", "content": "charging?"}]}
    assert client.post("/v1/chat/completions", json=chat, headers=bearer(hr)).status_code == 404
    assert client.post("/v1/chat/completions", json=chat, headers=bearer(robots)).status_code == 200
    write = client.post("/v1/collections/staff/documents", files=upload, headers=bearer(reader))
    assert write.status_code == 403 and write.json()["error"]["type"] == "forbidden"
    read = client.post(
        "/v1/collections/staff/search", json={"query": "leave"}, headers=bearer(reader)
    )
    assert read.status_code == 200


def test_ask_streams_deltas_then_one_final_event(served, fake_llm):
    _, _, client = served
    fake_llm.enqueue("Twenty-five days [1].")
    with client.stream(
        "POST", "/v1/collections/staff/ask", json={"question": "leave?", "stream": True}
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [
            json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")
        ]
    deltas = [e["text"] for e in events if e["type"] == "delta"]
    assert "".join(deltas).strip() == "Twenty-five days [1]." and len(deltas) > 1
    final = events[-1]
    assert final["type"] == "final" and final["cited"] == [1] and final["sources"]


def test_openai_route_plain_and_streaming_keeps_the_sources(served, fake_llm):
    _, _, client = served
    body = {
        "model": "staff",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "How many days of leave?"},
            {"role": "assistant", "content": "25 days."},
            {"role": "user", "content": "And is it paid?"},
        ],
    }
    fake_llm.enqueue("Paid leave, 25 days [1].")
    plain = client.post("/v1/chat/completions", json=body).json()
    assert plain["object"] == "chat.completion"
    assert plain["choices"][0]["message"]["role"] == "assistant"
    assert plain["rag"]["sources"][0]["file"].endswith("staff.md")
    # the fake model counts words: what it was given and the five it wrote
    read = sum(len(m["content"].split()) for m in fake_llm.prompts[-1])
    assert plain["usage"] == {
        "prompt_tokens": read,
        "completion_tokens": 5,
        "total_tokens": read + 5,
    }
    fake_llm.enqueue("Yes, paid [1].")
    with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert not any("usage" in c for c in chunks)  # only when asked for (stream_options)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text.strip() == "Yes, paid [1]."
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["rag"]["sources"] and chunks[-1]["rag"]["cited"] == [1]
    # the earlier user turn travelled as history: the prompt names it
    assert "How many days of leave?" in json.dumps(fake_llm.prompts[-1])

    fake_llm.enqueue("Yes, paid [1].")
    counted = {**body, "stream": True, "stream_options": {"include_usage": True}}
    with client.stream("POST", "/v1/chat/completions", json=counted) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 3
    assert chunks[-2]["rag"]["cited"] == [1]


def test_openai_usage_is_zero_when_the_model_was_not_called(
    settings, fake_embedder, fake_llm, tmp_path
):
    strict = build_app(
        settings.model_copy(update={"refuse_below": 0.99}), embedder=fake_embedder, llm=fake_llm
    )
    (tmp_path / "staff").mkdir()
    (tmp_path / "staff" / "staff.md").write_text(LEAVE)
    strict.ingestor().ingest([tmp_path / "staff"], "staff")
    client = TestClient(create_api(strict, KeyStore(strict.settings.home)))
    body = {"model": "staff", "messages": [{"role": "user", "content": "capital of France?"}]}
    refused = client.post("/v1/chat/completions", json=body).json()
    assert refused["rag"]["refused"] and not fake_llm.prompts  # the gate refused: no model call
    assert refused["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


def test_errors_are_json_one_line_never_a_trace(served, fake_llm):
    app, keys, client = served
    missing = client.post("/v1/collections/staff/ask", json={})
    assert missing.status_code == 422 and missing.json()["error"]["message"].startswith("question")
    unknown = client.post("/v1/collections/nothere/search", json={"query": "x"})
    assert unknown.status_code == 404 and "Traceback" not in unknown.text
    tiny = app.settings.model_copy(update={"max_file_mb": 0.0001})
    small = TestClient(
        create_api(build_app(tiny, embedder=app.models.embedder, llm=fake_llm), keys)
    )
    big = [("files", ("big.txt", b"x" * 1000, "text/plain"))]
    too_large = small.post("/v1/collections/staff/documents", files=big)
    assert too_large.status_code == 413
    assert "MB limit" in too_large.json()["error"]["message"]
    huge = small.post(
        "/v1/collections/staff/documents",
        content=b"x",
        headers={"content-length": str(10**12), "content-type": "multipart/form-data; boundary=x"},
    )
    assert huge.status_code == 413 and "at most 20 files" in huge.json()["error"]["message"]


def test_full_queue_answers_503_with_retry_after(staff_api):
    client = staff_api(max_queue=0)
    busy = client.post("/v1/collections/staff/ask", json={"question": "leave?"})
    assert busy.status_code == 503 and busy.headers["retry-after"] == "5"


def test_openapi_document_is_committed(app):
    served = create_api(app, KeyStore(app.settings.home)).openapi()
    committed = json.loads((ROOT / "docs" / "openapi.json").read_text())
    assert served == committed, "run `rag serve --openapi > docs/openapi.json`"


def test_keys_commands_and_serve_refuses_the_network_without_keys(app, capsys):
    from rag.cli import main

    assert main(["serve", "--host", "0.0.0.0", "--port", "1"], app=app) == 2
    assert "refusing to serve 0.0.0.0 without API keys" in capsys.readouterr().err
    assert main(["keys", "create", "--collection", "staff", "--json"], app=app) == 0
    made = json.loads(capsys.readouterr().out)
    assert made["key"].startswith(f"rag_{made['id']}_") and made["collections"] == ["staff"]
    stored = (app.settings.home / "api-keys.json").read_text()
    assert made["key"] not in stored and made["key"].split("_", 2)[2] not in stored
    assert main(["keys", "list", "--json"], app=app) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [k["id"] for k in listed] == [made["id"]] and "digest" not in listed[0]
    assert main(["keys", "revoke", made["id"]], app=app) == 0
    assert KeyStore(app.settings.home).find(made["key"]) is None
    assert main(["keys", "revoke", made["id"]], app=app) == 2
    assert main(["keys", "create", "--collection", "x"], app=app) == 2  # not a valid name


def test_metrics_count_requests_first_tokens_and_the_library(served):
    _, keys, client = served
    assert client.post("/v1/collections/staff/ask", json={"question": "leave?"}).status_code == 200
    text = client.get("/metrics").text
    assert (
        'rag_requests_total{method="POST",route="/v1/collections/{name}/ask",status="200"} 1.0'
        in text
    )
    assert "rag_first_token_seconds_count 1.0" in text
    assert "rag_queue_depth 0.0" in text
    assert 'rag_documents{collection="staff"} 1.0' in text
    assert 'rag_chunks{collection="robots"}' in text
    _, staff = keys.create(["staff"])
    scoped = client.get("/metrics", headers=bearer(staff)).text
    assert 'rag_documents{collection="staff"} 1.0' in scoped and "robots" not in scoped
    assert client.get("/metrics").status_code == 401


def test_an_answer_over_the_time_limit_is_stopped(staff_api, fake_llm):
    client = staff_api(timeout_s=0)
    fake_llm.enqueue("one two three four five six seven")
    plain = client.post("/v1/collections/staff/ask", json={"question": "leave?"})
    assert plain.status_code == 504 and plain.json()["error"]["type"] == "timeout"
    assert not fake_llm.lock.locked()  # the model was freed for the next answer
    fake_llm.enqueue("one two three four five six seven")
    chat = {"model": "staff", "messages": [{"role": "user", "content": "leave?"}], "stream": True}
    with client.stream("POST", "/v1/chat/completions", json=chat) as response:
        lines = [x for x in response.iter_lines() if x.startswith("data: ")]
    last = json.loads(lines[-2][6:])
    assert last["choices"][0]["finish_reason"] == "length" and lines[-1] == "data: [DONE]"
    text = "".join(json.loads(x[6:])["choices"][0]["delta"].get("content", "") for x in lines[:-1])
    assert text.strip() == "one"


def test_a_burst_is_admitted_up_to_the_limit_at_once(staff_api, fake_llm):
    """Answers are counted from admission, not from reaching the model: of a burst, exactly
    `max_queue` get in, the rest get 503, and each place is given back when its answer ends."""
    import threading

    client = staff_api(max_queue=2)
    fake_llm.lock.acquire()  # the model is busy: admitted answers pile up
    statuses: list[int] = []

    def ask_once() -> None:
        statuses.append(
            client.post("/v1/collections/staff/ask", json={"question": "leave?"}).status_code
        )

    burst = [threading.Thread(target=ask_once) for _ in range(5)]
    for thread in burst:
        thread.start()
    deadline = time.monotonic() + 30
    while len(statuses) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorted(statuses) == [503, 503, 503]
    fake_llm.lock.release()
    for thread in burst:
        thread.join(timeout=30)
    assert sorted(statuses) == [200, 200, 503, 503, 503]
    assert client.post("/v1/collections/staff/ask", json={"question": "leave?"}).status_code == 200
    with client.stream(
        "POST", "/v1/collections/staff/ask", json={"question": "leave?", "stream": True}
    ) as response:
        list(response.iter_lines())
    metrics = client.get("/metrics").text
    assert "rag_answers_in_progress 0.0" in metrics  # streamed answers give their place back
