"""Uploads from the page: stored per content, never overwriting, with a limit the page states."""

from __future__ import annotations

from rag.settings import load_settings
from rag.ui_launch import streamlit_command
from rag.uploads import safe_name, store_upload, upload_limit_mb


def test_same_name_other_bytes_keeps_both(tmp_path):
    first = store_upload(tmp_path, "notes.md", b"# Alpha\n\nthe first text\n")
    second = store_upload(tmp_path, "notes.md", b"# Beta\n\nthe second text\n")
    assert first.path != second.path and first.path.name == second.path.name == "notes.md"
    assert first.path.read_bytes() == b"# Alpha\n\nthe first text\n"
    assert second.path.read_bytes() == b"# Beta\n\nthe second text\n"
    assert not first.duplicate and not second.duplicate
    assert second.namesakes == [first.path]
    assert "1 earlier upload(s) with the same name" in second.message(tmp_path)


def test_names_that_sanitise_alike_keep_both(tmp_path):
    one = store_upload(tmp_path, "a?b.md", b"one")
    two = store_upload(tmp_path, "a*b.md", b"two")
    assert one.path.name == two.path.name == "a_b.md"
    assert one.path.read_bytes() == b"one" and two.path.read_bytes() == b"two"
    assert two.renamed and "stored as" in two.message(tmp_path)


def test_same_bytes_are_stored_once_whatever_the_name(tmp_path):
    first = store_upload(tmp_path, "report.md", b"same bytes")
    again = store_upload(tmp_path, "report.md", b"same bytes")
    renamed = store_upload(tmp_path, "copy of report.md", b"same bytes")
    assert again.duplicate and again.path == first.path
    assert renamed.duplicate and renamed.path == first.path
    assert renamed.message(tmp_path) == (
        f"copy of report.md is already in the library (as report.md): "
        f"uploads/{first.path.relative_to(tmp_path).as_posix()}"
    )
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["report.md"]


def test_a_name_never_leaves_the_uploads_folder(tmp_path):
    for name in ["../../etc/passwd", "..\\..\\boot.ini", "/abs/x.md", "...", ".hidden.md"]:
        stored = store_upload(tmp_path, name, name.encode())
        assert stored.path.parent.parent == tmp_path, name
    assert safe_name("../../etc/passwd") == "passwd" and safe_name("...") == "upload"


def test_upload_limit_follows_the_product_setting():
    assert upload_limit_mb(200.0, 200) == 200
    assert upload_limit_mb(12.5, 200) == 13
    assert upload_limit_mb(0.2, 200) == 1
    assert upload_limit_mb(500, 200) == 200  # the server refuses more than its own limit


def test_streamlit_is_started_with_the_products_upload_limit(monkeypatch):
    monkeypatch.setenv("RAG_MAX_FILE_MB", "12.5")
    command = streamlit_command(load_settings(), "127.0.0.1", 8501)
    assert command[command.index("--server.maxUploadSize") + 1] == "13"
