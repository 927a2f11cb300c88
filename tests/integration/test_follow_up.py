"""Follow-up questions with the real models: 'What is X?' then 'And its default value?'."""

import os
import subprocess

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import BIN, ROOT
from tests.integration.conftest import run_cli
from tests.integration.server_pass import kept_store

pytestmark = pytest.mark.integration

DOCS = {
    "columns.md": "# Column limit\n\nSQLITE_MAX_COLUMN is the largest number of columns a table or "
    "index may have. Its default value is 2000, and it can be raised to 32767 at compile time.\n",
    "page-size.md": "# Page size\n\nThe page size of a new database file has a default value of "
    "4096 bytes; it must be a power of two.\n",
    "cache.md": "# Cache\n\nThe cache size has a default value of -2000, meaning about 2 MB of "
    "memory for the page cache.\n",
    "journal.md": "# Journal mode\n\nThe journal mode has a default value of DELETE; WAL is an "
    "alternative that allows readers during writes.\n",
}


@pytest.fixture(scope="module")
def limits_home(tmp_path_factory, chroma_pass):
    home = tmp_path_factory.mktemp("limits-home")
    docs = tmp_path_factory.mktemp("limits-docs")
    for name, text in DOCS.items():
        (docs / name).write_text(text)
    with kept_store(chroma_pass, "limits_home"):
        result = run_cli("ingest", str(docs), "--json", env=dict(os.environ, RAG_HOME=str(home)))
    assert result.returncode == 0, result.stderr
    return home


def test_rag_chat_follow_up_finds_the_earlier_subject(limits_home):
    result = subprocess.run(
        [str(BIN / "rag"), "chat", "--top-k", "1"],
        input="What is SQLITE_MAX_COLUMN?\nAnd its default value?\n",
        capture_output=True,
        text=True,
        env=dict(os.environ, RAG_HOME=str(limits_home)),
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    blocks = result.stdout.split("rag> ")[1:]
    assert len(blocks) == 2
    assert "columns.md" in blocks[1].split("Sources:")[1]


def test_ui_follow_up_finds_the_earlier_subject(limits_home, monkeypatch):
    monkeypatch.setenv("RAG_HOME", str(limits_home))
    app = AppTest.from_file(str(ROOT / "ui" / "app.py"), default_timeout=300)
    app.run()
    app.chat_input[0].set_value("What is SQLITE_MAX_COLUMN?").run()
    app.chat_input[0].set_value("And its default value?").run()
    assert not app.exception
    answers = [m for m in app.chat_message if m.name == "assistant"]
    assert len(answers) == 2
    top = [md.value for md in answers[1].markdown if md.value.startswith(":blue-badge[1] **")]
    assert top and "columns.md" in top[0]
