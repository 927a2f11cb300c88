import json
import re

import pytest

import ingest.cli
import ingest.pipeline
import rag.cli
import rag.engine
from tests.conftest import DATA, ROOT, FakeLLM


@pytest.fixture
def fake_models(monkeypatch, fake_embedder):
    """Wire the fakes in at the loaders, the seam where CLIs get their models."""
    llm = FakeLLM(reply="Twenty-two days [1].")
    monkeypatch.setattr(ingest.pipeline, "load_embedder", lambda settings: fake_embedder)
    monkeypatch.setattr(rag.engine, "load_embedder", lambda settings: fake_embedder)
    monkeypatch.setattr(rag.engine, "load_llm", lambda settings: llm)
    return llm


@pytest.mark.parametrize(
    "argv",
    [["rag"], ["rag", "ask"], ["rag", "status"], ["rag", "ui"], ["ingest"]],
)
def test_every_command_has_help(argv, capsys):
    main = ingest.cli.main if argv[0] == "ingest" else rag.cli.main
    with pytest.raises(SystemExit) as info:
        main([*argv[1:], "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage:") and len(out.splitlines()) > 4


def test_readme_documents_every_command():
    readme = (ROOT / "README.md").read_text()
    for command in ["make run", "make test", "rag ask", "rag ui", "rag status", "ingest "]:
        assert command in readme


def test_ingest_json_report_and_exit_code(fake_models, capsys):
    code = ingest.cli.main([str(DATA), "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 1
    assert set(data) >= {"files", "chunks", "skipped", "failed", "seconds"}
    assert data["files"] == 8 and data["chunks"] >= 8
    assert {f["file"].rsplit("/", 1)[1] for f in data["failed"]} == {
        "binary.txt",
        "corrupt.pdf",
        "encrypted.pdf",
        "latin1.txt",
    }
    assert all(set(f) == {"file", "error"} for f in data["failed"])


def test_ingest_missing_path_exits_2_with_one_line(fake_models, capsys, tmp_path):
    code = ingest.cli.main([str(tmp_path / "no-such-folder")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "no such file or folder" in err and "no-such-folder" in err


def test_ingest_if_empty_leaves_a_filled_collection_alone(fake_models, capsys):
    assert ingest.cli.main([str(DATA / "notes.md"), "--json"]) == 0
    capsys.readouterr()
    assert ingest.cli.main([str(DATA / "plain.txt"), "--if-empty", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["files"] == 0


def test_ask_json_shape(fake_models, capsys):
    ingest.cli.main([str(DATA / "notes.md"), str(DATA / "three-pages.pdf"), "--json"])
    capsys.readouterr()
    code = rag.cli.main(["ask", "Which page has the bravo page marker?", "--json", "--top-k", "3"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    assert data["answer"] == "Twenty-two days [1]."
    assert data["refused"] is False
    assert 1 <= len(data["sources"]) <= 3
    top = data["sources"][0]
    assert top["file"] == str((DATA / "three-pages.pdf").resolve()) and top["page"] == 2
    for source in data["sources"]:
        assert isinstance(source["score"], float) and isinstance(source["text"], str)
        assert source["page"] is None or isinstance(source["page"], int)
    scores = [s["score"] for s in data["sources"]]
    assert scores == sorted(scores, reverse=True)
    assert set(data["timings"]) >= {"retrieve_s", "generate_s", "total_s"}


def test_ask_streams_text_then_lists_sources(fake_models, capsys):
    ingest.cli.main([str(DATA / "notes.md"), "--json"])
    capsys.readouterr()
    assert rag.cli.main(["ask", "markdown body marker?"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Twenty-two days [1].")
    assert re.search(r"\*\[1\] .*notes\.md", out)


def test_ask_on_empty_collection_is_one_clear_line(fake_models, capsys):
    assert rag.cli.main(["ask", "anything?"]) == 1
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "is empty" in captured.err and "ingest" in captured.err
    assert "Traceback" not in captured.err


def test_bad_setting_is_one_line(monkeypatch, capsys):
    monkeypatch.setenv("RAG_TOP_K", "lots")
    assert rag.cli.main(["ask", "q"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "RAG_TOP_K='lots'" in err


def test_unreachable_chroma_server_is_one_line(monkeypatch, capsys, fake_models):
    monkeypatch.setenv("RAG_CHROMA_HOST", "127.0.0.1")
    monkeypatch.setenv("RAG_CHROMA_PORT", "9")
    assert rag.cli.main(["status"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "http://127.0.0.1:9" in err and "RAG_CHROMA_HOST" in err


def test_status_json(fake_models, capsys):
    ingest.cli.main([str(DATA / "notes.md"), "--json", "--collection", "notes"])
    capsys.readouterr()
    assert rag.cli.main(["status", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["collections"] == [{"collection": "notes", "files": 1, "chunks": 2}]


def test_unexpected_errors_are_one_line_too(monkeypatch, capsys):
    def broken(settings):
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr(rag.cli, "build_engine", broken)
    assert rag.cli.main(["status"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "RuntimeError: disk on fire" in err and "RAG_LOG_LEVEL" in err
