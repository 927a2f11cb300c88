import json
import re
from pathlib import Path

import pytest

import ingest.cli
import ingest.pipeline
import rag.cli
import rag.engine
from tests.conftest import DATA, NO_REFUSAL, ROOT, FakeLLM


@pytest.fixture
def fake_models(monkeypatch, fake_embedder):
    """Wire the fakes in at the loaders, the seam where CLIs get their models."""
    llm = FakeLLM(reply="Twenty-two days [1].")
    for key in NO_REFUSAL:
        monkeypatch.setenv(f"RAG_{key.upper()}", "-1")
    monkeypatch.setattr(ingest.pipeline, "load_embedder", lambda settings: fake_embedder)
    monkeypatch.setattr(rag.engine, "load_embedder", lambda settings: fake_embedder)
    monkeypatch.setattr(rag.engine, "load_llm", lambda settings: llm)
    return llm


@pytest.mark.parametrize(
    "argv",
    [
        ["rag"],
        ["rag", "ask"],
        ["rag", "chat"],
        ["rag", "eval"],
        ["rag", "model"],
        ["rag", "status"],
        ["rag", "ui"],
        ["ingest"],
        ["ingest", "remove"],
        ["ingest", "list"],
        ["ingest", "collections"],
        ["ingest", "check"],
    ],
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
    commands = ["make run", "make test", "rag ask", "rag chat", "rag eval", "rag ui", "rag status"]
    commands += ["rag model info", "rag model pull"]
    commands += ["ingest PATH", "ingest remove", "ingest list", "ingest collections"]
    commands += ["ingest check", "--no-wait", "When something is damaged"]
    for command in commands:
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


def test_edit_delete_rename_sync_then_list_and_ask(fake_models, capsys, tmp_path):
    folder = tmp_path / "lib"
    folder.mkdir()
    for name, text in {
        "keep.md": "# Keep\n\nUnchanged text about owls.\n",
        "edit.md": "# Edit\n\nOld text about ferns.\n",
        "gone.md": "# Gone\n\nThe deleted file talks about zeppelins.\n",
        "old-name.md": "# Renamed\n\nText about lighthouses.\n",
    }.items():
        (folder / name).write_text(text)
    assert ingest.cli.main([str(folder), "--json"]) == 0
    (folder / "edit.md").write_text("# Edit\n\nNew text about cacti.\n\n## Also\n\nAnd deserts.\n")
    (folder / "gone.md").unlink()
    (folder / "old-name.md").rename(folder / "new-name.md")
    capsys.readouterr()
    assert ingest.cli.main([str(folder), "--sync", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["files"], report["moved"], report["removed"]) == (1, 1, 1)
    assert ingest.cli.main(["list", "--json"]) == 0
    listed = {Path(i["file"]).name: i["chunks"] for i in json.loads(capsys.readouterr().out)}
    assert listed == {"keep.md": 1, "edit.md": 2, "new-name.md": 1}
    assert rag.cli.main(["ask", "zeppelins deleted file", "--json", "--top-k", "10"]) == 0
    cited = {Path(s["file"]).name for s in json.loads(capsys.readouterr().out)["sources"]}
    assert cited == {"keep.md", "edit.md", "new-name.md"}


def test_remove_and_collections_commands(fake_models, capsys):
    ingest.cli.main([str(DATA / "notes.md"), str(DATA / "plain.txt"), "--json", "-c", "notes"])
    capsys.readouterr()
    assert ingest.cli.main(["remove", str(DATA / "plain.txt"), "-c", "notes", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["removed"] == 1
    assert ingest.cli.main(["collections", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"collection": "notes", "files": 1, "chunks": 2}]


@pytest.mark.parametrize("sub", ["remove", "list", "collections"])
def test_ingest_subcommands_have_help(sub, capsys):
    with pytest.raises(SystemExit) as info:
        ingest.cli.main([sub, "--help"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: ingest {sub}")


def test_chat_reads_questions_from_stdin_and_keeps_context(
    fake_models, capsys, monkeypatch, tmp_path
):
    import io

    (tmp_path / "a.md").write_text("# Widget\n\nThe widget flag WX_FAST defaults to off.\n")
    (tmp_path / "b.md").write_text("# Gadget\n\nThe gadget default value is blue.\n")
    ingest.cli.main([str(tmp_path), "--json"])
    capsys.readouterr()
    monkeypatch.setattr(
        "sys.stdin", io.StringIO("What is the WX_FAST widget flag?\nAnd its default value?\n")
    )
    assert rag.cli.main(["chat", "--top-k", "1"]) == 0
    out = capsys.readouterr().out
    assert out.count("rag> Twenty-two days [1].") == 2
    assert out.count("a.md") == 2  # the follow-up found the widget passage again


def test_list_names_a_missing_collection_without_creating_it(fake_models, capsys, rag_home):
    assert ingest.cli.main(["list"]) == 0  # nothing ingested yet: a hint, not an error
    assert "holds no files" in capsys.readouterr().out
    assert ingest.cli.main(["list", "--collection", "typo"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no collection named 'typo'" in err[0]
    assert not (rag_home / "manifests" / "typo.sqlite3").exists()


def test_check_command_reports_clean_and_problems(fake_models, capsys, tmp_path):
    (tmp_path / "a.md").write_text("# A\n\nAlpha text about rivers.\n")
    assert ingest.cli.main([str(tmp_path / "a.md")]) == 0
    capsys.readouterr()
    assert ingest.cli.main(["check", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["clean"] is True
    from rag import keyword
    from rag.settings import load_settings

    for path in keyword.index_dir(load_settings(), "default").rglob("ids.json"):
        path.write_text("[")
    keyword._cache.clear()
    assert ingest.cli.main(["check"]) == 1
    captured = capsys.readouterr()
    assert "keyword" in captured.out and "--repair" in captured.err
    assert ingest.cli.main(["check", "--repair"]) == 0
    assert "clean" in capsys.readouterr().out
