"""The real embedded models and a real Chroma PersistentClient, through the commands a user types."""

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import DATA, SAMPLES
from tests.integration.conftest import network_namespaces_work, run_cli

pytestmark = pytest.mark.integration

# The store answers every question the same way; one (the PDF page) is enough for a second store.
ASKED_ALIKE = pytest.mark.server_pass_redundant("the first question makes the same store calls")


def ask(home, question: str):
    env = dict(os.environ, RAG_HOME=str(home))
    result = run_cli("rag", "ask", question, "--json", env=env, offline=True)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize(
    ("question", "file", "page"),
    [
        (
            "How many days of paid annual leave do full-time employees get?",
            "employee-handbook.pdf",
            2,
        ),
        pytest.param(
            "What does error code E-214 mean?", "support-faq.html", None, marks=ASKED_ALIKE
        ),
        pytest.param(
            "How long does it take to charge the K2 robot and what is its IP rating?",
            "k2-robot-specs.docx",
            None,
            marks=ASKED_ALIKE,
        ),
        pytest.param(
            "Berapa kecepatan maksimum robot di zona pejalan kaki?",
            "panduan-keselamatan.md",
            None,
            marks=ASKED_ALIKE,
        ),
    ],
)
def test_ask_cites_the_file_that_holds_the_answer(sample_home, question, file, page):
    data = ask(sample_home, question)
    top = data["sources"][0]
    assert top["file"] == str(SAMPLES.resolve() / file)
    assert top["page"] == page
    assert data["answer"].strip()
    assert data["timings"]["total_s"] > 0


@pytest.mark.embedded_only  # a namespace with no network reaches no server
def test_ask_runs_without_network(sample_home):
    if not network_namespaces_work():
        pytest.skip("cannot create a network namespace here")
    data = ask(sample_home, "When was firmware 3.2.0 released?")
    assert data["sources"][0]["file"].endswith("release-notes.md")


def test_broken_files_never_abort_a_batch_or_print_a_traceback(tmp_path):
    folder = tmp_path / "mixed"
    shutil.copytree(DATA, folder)
    (folder / "truncated.docx").write_bytes((DATA / "sample.docx").read_bytes()[:500])
    (folder / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(200))
    env = dict(os.environ, RAG_HOME=str(tmp_path / "home"))
    result = run_cli("ingest", str(folder), env=env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    assert "8 file(s) stored" in result.stdout
    failed_lines = [line for line in result.stderr.splitlines() if "FAILED" in line]
    assert len(failed_lines) == 5  # binary, corrupt, encrypted, latin1, truncated docx
    json_run = run_cli("ingest", str(folder), "--json", env=env)
    report = json.loads(json_run.stdout)
    assert report["unchanged"] == 8 and report["chunks"] == 0


@pytest.mark.store_independent
def test_ingest_missing_path_exits_2(tmp_path):
    env = dict(os.environ, RAG_HOME=str(tmp_path))
    result = run_cli("ingest", str(tmp_path / "missing"), env=env)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "missing" in result.stderr


def test_a_dozen_kinds_of_broken_files_beside_good_ones(tmp_path):
    import zipfile

    folder = tmp_path / "library"
    folder.mkdir()
    good = [
        "notes.md",
        "page.html",
        "plain.txt",
        "sample.docx",
        "three-pages.pdf",
        "slides.pptx",
        "table.xlsx",
        "book.epub",
    ]
    for name in good:
        shutil.copy(DATA / name, folder / name)
    broken = folder / "broken"
    broken.mkdir()
    shutil.copy(DATA / "corrupt.pdf", broken / "corrupt.pdf")
    shutil.copy(DATA / "encrypted.pdf", broken / "encrypted.pdf")
    shutil.copy(DATA / "binary.txt", broken / "binary.txt")
    shutil.copy(DATA / "latin1.txt", broken / "latin1.txt")
    (broken / "empty.md").write_bytes(b"")
    for name in ("sample.docx", "slides.pptx", "table.xlsx", "book.epub"):
        (broken / f"truncated-{name}").write_bytes((DATA / name).read_bytes()[:400])
    with zipfile.ZipFile(broken / "bomb.docx", "w", compression=zipfile.ZIP_DEFLATED) as bomb:
        bomb.writestr("word/document.xml", b"\0" * (60 * 1024 * 1024))
    (broken / "huge.txt").write_bytes(b"x" * (3 * 1024 * 1024))
    (broken / "loop-a.txt").symlink_to(broken / "loop-b.txt")
    (broken / "loop-b.txt").symlink_to(broken / "loop-a.txt")
    (broken / "dangling.md").symlink_to(broken / "nowhere.md")
    shutil.copy(DATA / "scanned.pdf", broken / "scanned.pdf")

    env = dict(
        os.environ, RAG_HOME=str(tmp_path / "home"), RAG_MAX_FILE_MB="2", RAG_MAX_UNZIPPED_MB="50"
    )
    result = run_cli("ingest", str(folder), "--json", env=env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    report = json.loads(result.stdout)
    assert report["files"] == len(good)
    problems = {
        item["file"].rsplit("/", 1)[1]: item.get("error") or item.get("reason")
        for item in report["failed"] + report["skipped"]
    }
    assert set(problems) == {p.name for p in broken.iterdir()}
    expected = {
        "corrupt.pdf": "corrupt",
        "encrypted.pdf": "encrypted",
        "binary.txt": "binary",
        "latin1.txt": "UTF-8",
        "empty.md": "empty",
        "truncated-sample.docx": "damaged",
        "truncated-slides.pptx": "damaged",
        "truncated-table.xlsx": "damaged",
        "truncated-book.epub": "damaged",
        "bomb.docx": "zip bomb",
        "huge.txt": "RAG_MAX_FILE_MB",
        "loop-a.txt": "link",
        "loop-b.txt": "link",
        "dangling.md": "link",
        "scanned.pdf": "no text layer",
    }
    for name, phrase in expected.items():
        assert phrase in problems[name], (name, problems[name])
    listed = json.loads(run_cli("ingest", "list", "--json", env=env).stdout)
    stored = {Path(item["file"]).name: item for item in listed if item["status"] == "stored"}
    assert set(stored) == set(good)
    assert all(item["chunks"] > 0 and len(item["sha256"]) == 64 for item in stored.values())


@pytest.mark.store_independent
def test_model_info_describes_the_embedded_gguf(tmp_path):
    result = run_cli("rag", "model", "info", "--json", env=dict(os.environ, RAG_HOME=str(tmp_path)))
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["architecture"] == "llama" and info["quantization"] == "Q4_1"
    assert info["trained_context"] == 8192 and info["chat_template_from_gguf"] is True
    assert info["threads"] >= 1 and info["n_ctx"] == 4096


@pytest.mark.store_independent  # the context budget
def test_context_larger_than_n_ctx_is_answered_with_fewer_passages(sample_home):
    env = dict(os.environ, RAG_HOME=str(sample_home), RAG_N_CTX="1024", RAG_MAX_ANSWER_TOKENS="128")
    result = run_cli(
        "rag",
        "ask",
        "What are the rules for travel and expenses?",
        "--top-k",
        "12",
        "--json",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert len(data["sources"]) == 12
    assert 1 <= data["chunks_used"] < 12
    assert data["answer"].strip()
