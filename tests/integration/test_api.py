"""`rag serve` as a real server with the real embedding model: two keys for two collections,
each uploading, listing and asking (JSON, server-sent events, the official `openai` client) in
its own collection and getting 404 for the other's."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.conftest import DATA
from tests.integration.conftest import api_server, run_cli, stub_env, stub_llm

ANSWER = "The text says so [1]."


def make_key(env: dict, collection: str) -> str:
    result = run_cli("rag", "keys", "create", "--collection", collection, "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["key"]


@pytest.fixture
def two_teams(tmp_path):
    with stub_llm(ANSWER) as model_url:
        env = stub_env(tmp_path / "home", model_url)
        keys = {"alpha": make_key(env, "alpha"), "beta": make_key(env, "beta")}
        with api_server(env) as url:
            yield url, keys


def test_two_keys_two_collections_each_sees_only_its_own(two_teams):
    url, keys = two_teams
    files = {"alpha": DATA / "plain.txt", "beta": DATA / "notes.md"}
    clients = {
        team: httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=300)
        for team, key in keys.items()
    }
    for team, client in clients.items():
        with files[team].open("rb") as handle:
            report = client.post(
                f"/v1/collections/{team}/documents", files={"files": (files[team].name, handle)}
            )
        assert report.status_code == 200, report.text
        assert report.json()["files"] == 1 and report.json()["chunks"] >= 1
        listed = client.get(f"/v1/collections/{team}/documents").json()["documents"]
        assert [d["file"].rsplit("/", 1)[-1] for d in listed] == [files[team].name]
        asked = client.post(f"/v1/collections/{team}/ask", json={"question": "What is this about?"})
        assert asked.status_code == 200, asked.text
        body = asked.json()
        assert set(body) >= {"answer", "sources", "refused", "refusal_reason", "cited", "timings"}
        if not body["refused"]:
            assert body["answer"] == ANSWER
        assert {s["file"].rsplit("/", 1)[-1] for s in body["sources"]} == {files[team].name}
        with client.stream(
            "POST", f"/v1/collections/{team}/ask", json={"question": "Summarise it", "stream": True}
        ) as streamed:
            events = [json.loads(x[6:]) for x in streamed.iter_lines() if x.startswith("data: ")]
        assert events[-1]["type"] == "final" and events[-1]["sources"]

    for team, other in (("alpha", "beta"), ("beta", "alpha")):
        client = clients[team]
        doc_id = clients[other].get(f"/v1/collections/{other}/documents").json()["documents"][0]
        for method, path, kwargs in [
            ("get", f"/v1/collections/{other}/documents", {}),
            ("post", f"/v1/collections/{other}/documents", {"files": {"files": ("x.txt", b"x")}}),
            ("delete", f"/v1/collections/{other}/documents/{doc_id['id']}", {}),
            ("post", f"/v1/collections/{other}/search", {"json": {"query": "text"}}),
            ("post", f"/v1/collections/{other}/ask", {"json": {"question": "text?"}}),
        ]:
            response = getattr(client, method)(path, **kwargs)
            assert response.status_code == 404, (team, method, path, response.text)
        models = [m["id"] for m in client.get("/v1/models").json()["data"]]
        assert models == [team]
    # the other team's document is still there
    assert clients["beta"].get("/v1/collections/beta/documents").json()["documents"]


@pytest.mark.server_pass_redundant("the test above uploads and asks through the same routes")
def test_the_official_openai_client_gets_answers_and_sources(two_teams):
    url, keys = two_teams
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=keys["alpha"], timeout=300)
    with (DATA / "plain.txt").open("rb") as handle:
        httpx.post(
            f"{url}/v1/collections/alpha/documents",
            headers={"Authorization": f"Bearer {keys['alpha']}"},
            files={"files": ("plain.txt", handle)},
            timeout=300,
        ).raise_for_status()
    assert [m.id for m in client.models.list()] == ["alpha"]
    messages = [{"role": "user", "content": "What does the text say?"}]
    completion = client.chat.completions.create(model="alpha", messages=messages)
    assert completion.choices[0].message.role == "assistant"
    extra = completion.model_extra["rag"]
    assert extra["sources"] and "refused" in extra
    chunks = list(client.chat.completions.create(model="alpha", messages=messages, stream=True))
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].model_extra["rag"]["sources"]
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == completion.choices[0].message.content
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="beta", messages=messages)
