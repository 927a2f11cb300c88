"""The `rag` and `ingest` commands, run in-process on an App built with the fake models."""

import io
import json
import re
from pathlib import Path

import pytest

import ingest.cli
import rag.cli
from rag.app import build_app
from rag.errors import ExitStatus
from rag.locks import writer_lock
from rag.settings import load_settings
from tests.conftest import DATA, NO_REFUSAL, ROOT, FakeLLM

REPLY = "Twenty-two days [1]."


@pytest.fixture
def llm() -> FakeLLM:
    return FakeLLM(reply=REPLY)


@pytest.fixture
def app(settings, fake_embedder, llm):
    built = build_app(settings, embedder=fake_embedder, llm=llm)
    yield built
    built.close()


def debug_app(fake_embedder, llm):
    """An App whose settings ask for DEBUG logging (RAG_LOG_LEVEL=DEBUG)."""
    return build_app(
        load_settings(log_level="DEBUG", **NO_REFUSAL), embedder=fake_embedder, llm=llm
    )


class BrokenLLM(FakeLLM):
    """A model failing in a way no user can fix: a bug, with a cause."""

    def count_tokens(self, text: str) -> int:
        try:
            raise OSError("platter cracked")
        except OSError as cause:
            raise RuntimeError("disk on fire\nsecond line") from cause


class InterruptedLLM(FakeLLM):
    def stream_chat(self, messages, max_tokens, temperature):
        yield "Twenty"
        raise KeyboardInterrupt


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
        ["ingest", "add"],
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
    if len(argv) > 1:
        assert out.startswith(f"usage: {' '.join(argv)}")


@pytest.mark.parametrize("main", [rag.cli.main, ingest.cli.main])
def test_top_level_help_lists_commands_and_the_exit_statuses(main, capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    raw = capsys.readouterr().out
    out = " ".join(raw.split())
    for status in ("0 done", "1 some files failed", "2 a mistake you can fix", "70 an unexpected"):
        assert status in out
    assert "75 another command" in out and "130 interrupted" in out
    if main is ingest.cli.main:
        listed = re.findall(r"^ {4}(\w+)(?: |$)", raw, re.M)
        assert listed == ["add", "remove", "list", "collections", "check", "reembed"]


def test_readme_documents_every_command_and_the_exit_statuses():
    readme = (ROOT / "README.md").read_text()
    commands = ["make run", "make test", "rag ask", "rag chat", "rag eval", "rag ui", "rag status"]
    commands += ["rag model info", "rag model pull", "rag chat --json", "--top-k"]
    commands += ["ingest PATH", "ingest add", "ingest remove", "ingest list", "ingest collections"]
    commands += ["ingest check", "--no-wait", "When something is damaged", "RAG_LOG_LEVEL"]
    for command in commands:
        assert command in readme
    for status in ExitStatus:
        assert f"| {int(status)} |" in readme


def test_ingest_json_report_and_exit_code(app, capsys):
    code = ingest.cli.main([str(DATA), "--json"], app=app)
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


def test_ingest_add_is_the_default_command(app, capsys):
    assert ingest.cli.main(["add", str(DATA / "notes.md"), "--json", "-c", "notes"], app=app) == 0
    assert json.loads(capsys.readouterr().out)["files"] == 1
    assert ingest.cli.main(["--json", str(DATA / "plain.txt"), "-c", "notes"], app=app) == 0
    assert json.loads(capsys.readouterr().out)["files"] == 1
    assert ingest.cli.main(["list", "-c", "notes", "--json"], app=app) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2


def test_ingest_missing_path_exits_2_with_one_line(app, capsys, tmp_path):
    code = ingest.cli.main([str(tmp_path / "no-such-folder")], app=app)
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "no such file or folder" in err and "no-such-folder" in err
    assert err.startswith("error: ingest: ")


def test_ingest_if_empty_leaves_a_filled_collection_alone(app, capsys):
    assert ingest.cli.main([str(DATA / "notes.md"), "--json"], app=app) == 0
    capsys.readouterr()
    assert ingest.cli.main([str(DATA / "plain.txt"), "--if-empty", "--json"], app=app) == 0
    assert json.loads(capsys.readouterr().out)["files"] == 0


def test_ask_json_shape(app, capsys):
    ingest.cli.main([str(DATA / "notes.md"), str(DATA / "three-pages.pdf"), "--json"], app=app)
    capsys.readouterr()
    argv = ["ask", "Which page has the bravo page marker?", "--json", "--top-k", "3"]
    code = rag.cli.main(argv, app=app)
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    assert data["answer"] == REPLY
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


def test_ask_streams_text_then_lists_sources(app, capsys):
    ingest.cli.main([str(DATA / "notes.md"), "--json"], app=app)
    capsys.readouterr()
    assert rag.cli.main(["ask", "markdown body marker?"], app=app) == 0
    out = capsys.readouterr().out
    assert out.startswith(REPLY)
    assert re.search(r"\*\[1\] .*notes\.md", out)


def test_ask_options_reach_the_engine_not_the_settings(app, capsys):
    ingest.cli.main([str(DATA / "notes.md"), "--json", "-c", "notes"], app=app)
    ingest.cli.main([str(DATA / "plain.txt"), "--json", "-c", "plain"], app=app)
    capsys.readouterr()
    assert rag.cli.main(["ask", "text?", "--json", "-c", "plain", "-k", "1"], app=app) == 0
    sources = json.loads(capsys.readouterr().out)["sources"]
    assert [Path(s["file"]).name for s in sources] == ["plain.txt"]
    assert app.settings.collection == "default" and app.settings.top_k == 5


def test_ask_on_empty_collection_is_one_clear_line(app, capsys):
    assert rag.cli.main(["ask", "anything?"], app=app) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "is empty" in captured.err and "ingest" in captured.err
    assert captured.err.startswith("error: rag ask: ") and "Traceback" not in captured.err


def test_bad_setting_is_one_line(monkeypatch, capsys):
    monkeypatch.setenv("RAG_TOP_K", "lots")
    assert rag.cli.main(["ask", "q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "RAG_TOP_K='lots'" in err


def test_bad_collection_option_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        rag.cli.main(["ask", "q", "--collection", "a"])
    assert info.value.code == 2
    assert "collection name 'a' is not valid" in capsys.readouterr().err


def test_both_commands_exit_alike_for_a_missing_collection(app, capsys):
    codes = [
        rag.cli.main(["ask", "q", "-c", "typo"], app=app),
        ingest.cli.main(["list", "-c", "typo"], app=app),
    ]
    err = capsys.readouterr().err.splitlines()
    assert codes == [2, 2] and len(err) == 2
    assert err[0].startswith("error: rag ask: no collection named 'typo'")
    assert err[1].startswith("error: ingest list: no collection named 'typo'")


def test_both_commands_exit_alike_for_a_bad_setting(monkeypatch, capsys):
    monkeypatch.setenv("RAG_CHUNK_SIZE", "1")
    codes = [rag.cli.main(["status"]), ingest.cli.main([str(DATA / "notes.md")])]
    err = capsys.readouterr().err.splitlines()
    assert codes == [2, 2] and len(err) == 2
    assert err[0].startswith("error: rag status: RAG_CHUNK_SIZE=")
    assert err[1].startswith("error: ingest: RAG_CHUNK_SIZE=")


def test_both_commands_exit_alike_for_a_damaged_manifest(app, capsys, rag_home):
    ingest.cli.main([str(DATA / "notes.md")], app=app)
    capsys.readouterr()
    for path in (rag_home / "manifests").glob("default.sqlite3*"):
        path.write_bytes(b"not a database" * 100)
    codes = [rag.cli.main(["ask", "q"], app=app), ingest.cli.main(["list"], app=app)]
    err = capsys.readouterr().err.splitlines()
    assert codes == [2, 2] and len(err) == 2
    assert all("default.sqlite3 is damaged" in line and "--repair" in line for line in err)


def test_unreachable_chroma_server_is_one_line(monkeypatch, capsys):
    monkeypatch.setenv("RAG_CHROMA_HOST", "127.0.0.1")
    monkeypatch.setenv("RAG_CHROMA_PORT", "9")
    assert rag.cli.main(["status"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "http://127.0.0.1:9" in err and "RAG_CHROMA_HOST" in err


def test_status_json(app, capsys):
    ingest.cli.main([str(DATA / "notes.md"), "--json", "--collection", "notes"], app=app)
    capsys.readouterr()
    assert rag.cli.main(["status", "--json"], app=app) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["collections"] == [{"collection": "notes", "files": 1, "chunks": 2}]


def test_copies_of_one_file_count_alike_everywhere(app, capsys, tmp_path):
    folder = tmp_path / "copies"
    folder.mkdir()
    for name in ("a.md", "b.md", "c.md"):
        (folder / name).write_text("# Owls\n\nOwls hunt at night.\n")
    assert ingest.cli.main([str(folder), "--json"], app=app) == 0
    capsys.readouterr()
    assert rag.cli.main(["status", "--json"], app=app) == 0
    status = json.loads(capsys.readouterr().out)["collections"]
    assert ingest.cli.main(["list", "--json"], app=app) == 0
    listed = [r for r in json.loads(capsys.readouterr().out) if r["status"] == "stored"]
    assert ingest.cli.main(["collections", "--json"], app=app) == 0
    collections = json.loads(capsys.readouterr().out)
    assert status[0]["files"] == len(listed) == collections[0]["files"] == 3
    assert status == collections


def test_unexpected_errors_are_one_line_with_status_70(settings, fake_embedder, capsys):
    app = build_app(settings, embedder=fake_embedder, llm=BrokenLLM())
    ingest.cli.main([str(DATA / "notes.md")], app=app)
    capsys.readouterr()
    assert rag.cli.main(["ask", "markdown?"], app=app) == ExitStatus.BUG
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "RuntimeError: disk on fire" in err and "RAG_LOG_LEVEL" in err
    assert "Traceback" not in err and "platter" not in err


def test_an_unexpected_error_in_ingest_is_status_70(app, monkeypatch, capsys):
    def broken():
        raise RuntimeError("store fell over")

    monkeypatch.setattr(app.store, "names", broken)  # a seam of this one App, not of a module
    assert ingest.cli.main(["collections"], app=app) == 70
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error: ingest collections: unexpected RuntimeError" in err


def test_debug_prints_the_traceback_and_its_cause_for_a_bug(fake_embedder, capsys):
    app = debug_app(fake_embedder, BrokenLLM())
    ingest.cli.main([str(DATA / "notes.md")], app=app)
    capsys.readouterr()
    assert rag.cli.main(["ask", "markdown?"], app=app) == 70
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert "OSError: platter cracked" in err and "direct cause" in err
    assert err.splitlines()[-1].startswith("error: rag ask: unexpected RuntimeError: disk on fire")
    app.close()


def test_debug_prints_the_traceback_for_a_user_error(fake_embedder, llm, capsys):
    app = debug_app(fake_embedder, llm)
    assert rag.cli.main(["ask", "anything?"], app=app) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "EmptyCollectionError" in err
    assert err.splitlines()[-1].startswith("error: rag ask: collection 'default' is empty")
    app.close()


@pytest.mark.parametrize("main", [rag.cli.main, ingest.cli.main])
def test_a_bad_setting_keeps_its_cause_for_debug_and_one_line_without(main, monkeypatch, capsys):
    monkeypatch.setenv("RAG_TOP_K", "lots")
    argv = ["status"] if main is rag.cli.main else ["list"]
    assert main(argv) == 2
    quiet = capsys.readouterr().err
    assert quiet.count("\n") == 1 and "RAG_TOP_K='lots'" in quiet
    monkeypatch.setenv("RAG_LOG_LEVEL", "DEBUG")
    assert main(argv) == 2
    loud = capsys.readouterr().err
    assert "ValidationError" in loud and "direct cause" in loud  # the cause is kept
    assert loud.splitlines()[-1] == quiet.strip()


def test_log_level_setting_configures_the_product_loggers(fake_embedder, llm, capsys):
    import logging

    app = build_app(load_settings(log_level="INFO"), embedder=fake_embedder, llm=llm)
    assert rag.cli.main(["status", "--json"], app=app) == 0
    capsys.readouterr()
    logging.getLogger("ingest.anything").info("hello from the product")
    logging.getLogger("ingest.anything").debug("not shown")
    assert capsys.readouterr().err == "INFO ingest.anything: hello from the product\n"
    app.close()


def test_busy_collection_with_no_wait_is_75_and_interrupt_is_130(app, settings, capsys):
    with writer_lock(settings, "default"):
        assert ingest.cli.main([str(DATA / "notes.md"), "--no-wait"], app=app) == 75
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--no-wait" in err
    ingest.cli.main([str(DATA / "notes.md")], app=app)
    interrupted = build_app(settings, embedder=app.models.embedder, llm=InterruptedLLM())
    assert rag.cli.main(["ask", "markdown?"], app=interrupted) == 130
    assert capsys.readouterr().err.endswith("error: rag ask: interrupted\n")


def test_edit_delete_rename_sync_then_list_and_ask(app, capsys, tmp_path):
    folder = tmp_path / "lib"
    folder.mkdir()
    for name, text in {
        "keep.md": "# Keep\n\nUnchanged text about owls.\n",
        "edit.md": "# Edit\n\nOld text about ferns.\n",
        "gone.md": "# Gone\n\nThe deleted file talks about zeppelins.\n",
        "old-name.md": "# Renamed\n\nText about lighthouses.\n",
    }.items():
        (folder / name).write_text(text)
    assert ingest.cli.main([str(folder), "--json"], app=app) == 0
    (folder / "edit.md").write_text("# Edit\n\nNew text about cacti.\n\n## Also\n\nAnd deserts.\n")
    (folder / "gone.md").unlink()
    (folder / "old-name.md").rename(folder / "new-name.md")
    capsys.readouterr()
    assert ingest.cli.main([str(folder), "--sync", "--json"], app=app) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["files"], report["moved"], report["removed"]) == (1, 1, 1)
    assert ingest.cli.main(["list", "--json"], app=app) == 0
    listed = {Path(i["file"]).name: i["chunks"] for i in json.loads(capsys.readouterr().out)}
    assert listed == {"keep.md": 1, "edit.md": 2, "new-name.md": 1}
    argv = ["ask", "zeppelins deleted file", "--json", "--top-k", "10"]
    assert rag.cli.main(argv, app=app) == 0
    cited = {Path(s["file"]).name for s in json.loads(capsys.readouterr().out)["sources"]}
    assert cited == {"keep.md", "edit.md", "new-name.md"}


def test_remove_and_collections_commands(app, capsys):
    argv = [str(DATA / "notes.md"), str(DATA / "plain.txt"), "--json", "-c", "notes"]
    ingest.cli.main(argv, app=app)
    capsys.readouterr()
    assert (
        ingest.cli.main(["remove", str(DATA / "plain.txt"), "-c", "notes", "--json"], app=app) == 0
    )
    assert json.loads(capsys.readouterr().out)["removed"] == 1
    assert ingest.cli.main(["collections", "--json"], app=app) == 0
    assert json.loads(capsys.readouterr().out) == [{"collection": "notes", "files": 1, "chunks": 2}]


def two_topics(app, capsys, tmp_path) -> None:
    (tmp_path / "a.md").write_text("# Widget\n\nThe widget flag WX_FAST defaults to off.\n")
    (tmp_path / "b.md").write_text("# Gadget\n\nThe gadget default value is blue.\n")
    ingest.cli.main([str(tmp_path), "--json"], app=app)
    capsys.readouterr()


def test_chat_reads_questions_from_stdin_and_keeps_context(app, capsys, monkeypatch, tmp_path):
    two_topics(app, capsys, tmp_path)
    monkeypatch.setattr(
        "sys.stdin", io.StringIO("What is the WX_FAST widget flag?\nAnd its default value?\n")
    )
    assert rag.cli.main(["chat", "--top-k", "1"], app=app) == 0
    out = capsys.readouterr().out
    assert out.count(f"rag> {REPLY}") == 2
    assert out.count("a.md") == 2  # the follow-up found the widget passage again


def test_chat_json_prints_one_answer_per_line_with_the_conversation(
    app, llm, capsys, monkeypatch, tmp_path
):
    two_topics(app, capsys, tmp_path)
    questions = "What is the WX_FAST widget flag?\n\nAnd its default value?\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(questions))
    assert rag.cli.main(["chat", "--json", "--top-k", "1"], app=app) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2  # the empty line is skipped
    answers = [json.loads(line) for line in lines]
    assert rag.cli.main(["ask", "What is the WX_FAST widget flag?", "--json"], app=app) == 0
    shape = set(json.loads(capsys.readouterr().out))
    assert all(set(answer) == shape and answer["answer"] == REPLY for answer in answers)
    assert [Path(a["sources"][0]["file"]).name for a in answers] == ["a.md", "a.md"]
    follow_up_prompt = json.dumps(llm.prompts[1])
    assert "WX_FAST widget flag" in follow_up_prompt  # the earlier question was passed along


def test_chat_json_reports_a_question_it_cannot_answer_and_goes_on(app, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("first?\nsecond?\n"))
    assert rag.cli.main(["chat", "--json"], app=app) == 2
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["question"] for line in lines] == ["first?", "second?"]
    assert all("is empty" in line["error"] for line in lines)


def test_eval_top_k_defaults_to_the_setting_and_keeps_the_old_spelling(app, llm, capsys, tmp_path):
    ingest.cli.main([str(DATA / "notes.md"), str(DATA / "plain.txt"), "--json"], app=app)
    questions = tmp_path / "q.jsonl"
    row = {"id": "q1", "question": "markdown body marker text?", "answer_keywords": ["days"]}
    row |= {"source_file": "notes.md", "page": None, "language": "en", "kind": "fact"}
    questions.write_text(json.dumps(row) + "\n")
    passages = {}
    for option in ([], ["--top-k", "1"], ["-k", "2"], ["--k", "1"]):
        capsys.readouterr()
        assert rag.cli.main(["eval", str(questions), "--json", *option], app=app) == 0
        overall = json.loads(capsys.readouterr().out)["overall"]
        assert overall["questions"] == 1
        prompt = llm.prompts[-1][-1]["content"]
        assert overall["prompt_tokens_p50"] == sum(
            len(m["content"].split()) for m in llm.prompts[-1]
        )
        assert overall["prefill_p50_s"] >= 0
        passages[" ".join(option)] = len(re.findall(r"^\[\d+\] \(", prompt, re.M))
    assert passages == {"": 3, "--top-k 1": 1, "-k 2": 2, "--k 1": 1}
    two = build_app(load_settings(top_k=2, **NO_REFUSAL), embedder=app.models.embedder, llm=llm)
    assert rag.cli.main(["eval", str(questions), "--json"], app=two) == 0  # RAG_TOP_K=2
    assert len(re.findall(r"^\[\d+\] \(", llm.prompts[-1][-1]["content"], re.M)) == 2
    two.close()


@pytest.mark.parametrize("sub", ["add", "remove", "list", "collections", "check", "reembed"])
def test_ingest_subcommands_have_help(sub, capsys):
    with pytest.raises(SystemExit) as info:
        ingest.cli.main([sub, "--help"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: ingest {sub}")


def test_list_names_a_missing_collection_without_creating_it(app, capsys, rag_home):
    assert ingest.cli.main(["list"], app=app) == 0  # nothing ingested yet: a hint, not an error
    assert "holds no files" in capsys.readouterr().out
    assert ingest.cli.main(["list", "--collection", "typo"], app=app) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no collection named 'typo'" in err[0]
    assert not (rag_home / "manifests" / "typo.sqlite3").exists()


def test_check_command_reports_clean_and_problems(app, settings, fake_embedder, capsys, tmp_path):
    (tmp_path / "a.md").write_text("# A\n\nAlpha text about rivers.\n")
    assert ingest.cli.main([str(tmp_path / "a.md")], app=app) == 0
    capsys.readouterr()
    assert ingest.cli.main(["check", "--json"], app=app) == 0
    assert json.loads(capsys.readouterr().out)["clean"] is True
    for path in app.keywords.folder("default").rglob("meta.json"):
        path.write_text("[")
    fresh = build_app(settings, embedder=fake_embedder, llm=FakeLLM())  # nothing read yet
    assert ingest.cli.main(["check"], app=fresh) == 1
    captured = capsys.readouterr()
    assert "keyword" in captured.out and "--repair" in captured.err
    assert ingest.cli.main(["check", "--repair"], app=fresh) == 0
    assert "clean" in capsys.readouterr().out
    fresh.close()


def test_a_closed_pipe_ends_the_command_quietly(capsys):
    from rag.cli_support import run_command

    def body() -> int:
        raise BrokenPipeError(32, "Broken pipe")

    assert run_command("rag ask", body) == 0
    assert "unexpected" not in capsys.readouterr().err


def test_a_refused_question_says_why_in_text(settings, fake_embedder, capsys):
    llm = FakeLLM()
    strict = build_app(
        settings.model_copy(update={"refuse_below": 0.99}), embedder=fake_embedder, llm=llm
    )
    ingest.cli.main([str(DATA / "notes.md"), "--json"], app=strict)
    capsys.readouterr()
    assert rag.cli.main(["ask", "What is the boiling point of tungsten?"], app=strict) == 0
    out = capsys.readouterr().out
    assert out.startswith("The documents do not contain the answer.")
    assert "(not answered: no passage is about what the question asks)" in out
    assert llm.prompts == []
