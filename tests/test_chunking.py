from ingest.chunking import Chunker, section_heading
from ingest.document import LoadedFile, Section
from ingest.loaders import load_file
from tests.conftest import DATA


def test_pdf_chunks_carry_their_page_and_never_span_pages():
    path = DATA / "three-pages.pdf"
    nodes = Chunker(64, 8).chunk(path, load_file(path), "abc")
    assert {n.metadata["page"] for n in nodes} == {1, 2, 3}
    for node in nodes:
        page = node.metadata["page"]
        marker = {1: "alpha", 2: "bravo", 3: "charlie"}[page]
        assert marker in node.text or "page marker" not in node.text
        assert node.metadata["file"] == str(path)
        assert node.metadata["sha256"] == "abc"


def test_markdown_chunks_get_heading_path_and_stable_ids(tmp_path):
    doc = tmp_path / "guide.md"
    doc.write_text(
        "# Guide\n\nIntro text.\n\n## Install\n\nRun the installer.\n\n### Disk\n\nNeeds 2 GB.\n"
    )
    chunker = Chunker(128, 16)
    nodes = chunker.chunk(doc, load_file(doc), "h1")
    headings = [n.metadata.get("heading") for n in nodes]
    assert headings == ["Guide", "Guide > Install", "Guide > Install > Disk"]
    again = chunker.chunk(doc, load_file(doc), "h1")
    assert [n.node_id for n in nodes] == [n.node_id for n in again]
    changed = chunker.chunk(doc, load_file(doc), "h2")
    assert not {n.node_id for n in nodes} & {n.node_id for n in changed}


def test_embedded_text_has_title_and_heading_but_not_paths(tmp_path):
    from llama_index.core.schema import MetadataMode

    doc = tmp_path / "guide.md"
    doc.write_text("# Guide\n\nSome words here.\n")
    node = Chunker(128, 16).chunk(doc, load_file(doc), "x")[0]
    embedded = node.get_content(metadata_mode=MetadataMode.EMBED)
    assert "Guide" in embedded
    assert str(tmp_path) not in embedded and "sha256" not in embedded


def test_long_text_is_split_with_chunk_index(tmp_path):
    path = tmp_path / "long.txt"
    loaded = LoadedFile(
        [Section(text="A sentence about robots. " * 400)], title="long", parser="text"
    )
    nodes = Chunker(50, 5).chunk(path, loaded, "s")
    assert len(nodes) > 10
    assert [n.metadata["chunk_index"] for n in nodes] == list(range(len(nodes)))


def test_section_heading_joins_parents_and_own_heading():
    assert section_heading("\x1fA\x1fB\x1f", "### C\n\ntext") == "A > B > C"
    assert section_heading("", "plain text") == ""
