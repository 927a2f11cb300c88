"""Odd file names and symbolic links: each file is reported and stored under the path it was
found at, a bad name never stops the batch, and text output keeps one record per line."""

import json
import os

import pytest

import ingest.cli
from ingest.names import printable
from rag import store
from rag.app import build_app
from rag.manifest import Manifest
from rag.store import Store


@pytest.fixture
def ingestor(settings, fake_embedder):
    return build_app(settings, embedder=fake_embedder).ingestor()


def stored(settings) -> dict[str, str]:
    """{path: status} in the manifest, after checking Chroma cites only stored paths."""
    manifest = Manifest(settings.home, settings.collection)
    records = {r.path: r.status for r in manifest.records()}
    manifest.close()
    cited = {meta["file"] for _, meta in store.metadata_where(Store(settings).collection())}
    assert cited <= {path for path, status in records.items() if status == "stored"}
    return records


def write_latin1_name(folder) -> None:
    """A file whose name is the Latin-1 bytes of 'café.txt' (not UTF-8)."""
    fd = os.open(os.fsencode(folder) + b"/caf\xe9.txt", os.O_CREAT | os.O_WRONLY, 0o644)
    os.write(fd, b"A note about coffee.")
    os.close(fd)


def test_name_that_is_not_utf8_is_skipped_and_the_batch_goes_on(ingestor, settings, tmp_path):
    write_latin1_name(tmp_path)
    (tmp_path / "ok.txt").write_text("A note about tea.")
    report = ingestor.ingest([tmp_path])
    assert report.files == 1 and report.failed == []
    assert report.skipped == [
        {
            "file": f"{tmp_path}/caf\\xe9.txt",
            "reason": "file name is not valid UTF-8; "
            "rename it (e.g. convmv -f latin1 -t utf8 --notest NAME)",
        }
    ]
    assert stored(settings) == {str(tmp_path / "ok.txt"): "stored"}


def test_folder_whose_name_is_not_utf8_is_reported_once(ingestor, settings, tmp_path):
    os.mkdir(os.fsencode(tmp_path) + b"/r\xe9sum\xe9s")
    for n in range(3):
        with open(os.fsencode(tmp_path) + b"/r\xe9sum\xe9s/%d.txt" % n, "w") as handle:
            handle.write("text")
    (tmp_path / "ok.txt").write_text("A note about tea.")
    report = ingestor.ingest([tmp_path])
    assert [item["file"] for item in report.skipped] == [f"{tmp_path}/r\\xe9sum\\xe9s"]
    assert "folder name is not valid UTF-8" in report.skipped[0]["reason"]
    assert report.files == 1


def test_cli_reports_a_bad_name_in_text_and_json(app, capsys, tmp_path):
    write_latin1_name(tmp_path)
    (tmp_path / "ok.txt").write_text("A note about tea.")
    assert ingest.cli.main([str(tmp_path), "--json"], app) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["files"] == 1
    assert [item["file"] for item in data["skipped"]] == [f"{tmp_path}/caf\\xe9.txt"]
    (tmp_path / "ok.txt").write_text("Changed: a note about herbal tea.")
    assert ingest.cli.main([str(tmp_path)], app) == 0
    out = capsys.readouterr().out
    assert f"  skipped {tmp_path}/caf\\xe9.txt: file name is not valid UTF-8" in out


def test_link_inside_the_folder_is_stored_under_its_own_name_as_a_copy(
    ingestor, settings, tmp_path
):
    folder = tmp_path / "library"
    folder.mkdir()
    (folder / "real.txt").write_text("A note about submarines and the deep sea.")
    (folder / "shortcut.txt").symlink_to(folder / "real.txt")
    report = ingestor.ingest([folder])
    assert (report.files, report.moved) == (1, 1)  # one embedding, the link shares its chunks
    assert stored(settings) == {
        str(folder / "real.txt"): "stored",
        str(folder / "shortcut.txt"): "stored",
    }
    (folder / "shortcut.txt").unlink()
    assert ingestor.ingest([folder], sync=True).removed == 1
    assert stored(settings) == {str(folder / "real.txt"): "stored"}


def test_link_to_another_ingested_folder_is_followed(ingestor, settings, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "target.txt").write_text("A note about lighthouses.")
    (tmp_path / "a" / "link.txt").symlink_to(tmp_path / "b" / "target.txt")
    report = ingestor.ingest([tmp_path / "a", tmp_path / "b"])
    assert report.skipped == [] and report.files == 1
    assert set(stored(settings)) == {
        str(tmp_path / "a" / "link.txt"),
        str(tmp_path / "b" / "target.txt"),
    }


def test_link_leaving_the_folder_is_skipped_and_nothing_outside_is_stored(
    ingestor, settings, tmp_path
):
    folder = tmp_path / "library"
    folder.mkdir()
    (folder / "own.txt").write_text("A note about owls.")
    secret = tmp_path / "elsewhere" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("Private words that were never meant for this library.")
    (folder / "escape.txt").symlink_to(secret)
    (folder / "elsewhere").symlink_to(secret.parent)
    (folder / "zero.txt").symlink_to("/dev/zero")
    report = ingestor.ingest([folder])
    skipped = {item["file"]: item["reason"] for item in report.skipped}
    assert set(skipped) == {
        str(folder / "escape.txt"),
        str(folder / "elsewhere"),
        str(folder / "zero.txt"),
    }
    assert skipped[str(folder / "escape.txt")].startswith(
        f"symbolic link to {secret}, outside the folders being ingested"
    )
    assert "symbolic link to /dev/zero" in skipped[str(folder / "zero.txt")]
    assert stored(settings) == {str(folder / "own.txt"): "stored"}
    removed, _ = ingestor.remove([folder])
    assert removed == 1 and stored(settings) == {}


def test_file_named_directly_keeps_the_name_it_was_given(ingestor, settings, tmp_path):
    real = tmp_path / "store" / "report-v7-final.txt"
    real.parent.mkdir()
    real.write_text("Quarterly figures about lighthouses.")
    link = tmp_path / "report.txt"
    link.symlink_to(real)
    zero = tmp_path / "zero.txt"
    zero.symlink_to("/dev/zero")
    report = ingestor.ingest([link, zero])
    assert report.files == 1
    assert report.skipped == [{"file": str(zero), "reason": "not a regular file"}]
    assert stored(settings) == {str(link): "stored"}
    assert ingestor.remove([link])[0] == 1


def test_folder_reached_through_a_link_is_stored_by_its_real_path(ingestor, settings, tmp_path):
    real = tmp_path / "real-folder"
    real.mkdir()
    (real / "note.txt").write_text("A note about kites.")
    (tmp_path / "alias").symlink_to(real)
    assert ingestor.ingest([tmp_path / "alias"]).files == 1
    assert stored(settings) == {str(real / "note.txt"): "stored"}
    (real / "note.txt").unlink()
    assert ingestor.ingest([tmp_path / "alias"], sync=True).removed == 1


def test_control_characters_in_names_keep_text_output_to_one_line_per_file(app, capsys, tmp_path):
    (tmp_path / "two\nlines.txt").write_text("A note whose name holds a newline.")
    (tmp_path / "tab\there.txt").write_text("A note whose name holds a tab.")
    (tmp_path / "odd\n.xyz").write_text("unsupported")
    (tmp_path / "fine.txt").write_text("An ordinary note.")
    assert ingest.cli.main([str(tmp_path)], app) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1:] == [
        f"  skipped {tmp_path}/odd\\n.xyz: unsupported file type '.xyz'; "
        "`ingest --help` lists the formats"
    ]
    assert ingest.cli.main(["list"], app) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 4
    assert sorted(line.rsplit("  ", 1)[1] for line in listed) == sorted(
        f"{tmp_path}/{name}"
        for name in ["fine.txt", "odd\\n.xyz", "tab\\there.txt", "two\\nlines.txt"]
    )
    assert ingest.cli.main(["list", "--json"], app) == 0
    exact = {item["file"] for item in json.loads(capsys.readouterr().out)}
    assert str(tmp_path / "two\nlines.txt") in exact


def test_printable_escapes_what_would_break_a_line():
    assert printable("a\nb\tc\x1b[2J\u2028d") == "a\\nb\\tc\\x1b[2J\\u2028d"
    assert printable(os.fsdecode(b"caf\xe9")) == "caf\\xe9"
    assert printable("Ünïcødé names stay as they are") == "Ünïcødé names stay as they are"
