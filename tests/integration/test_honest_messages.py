"""Messages that say what really happened: a filter that matches nothing, a collection that
does not exist, a full disk — one line each, nothing created, nothing stored lost."""

import json
import os
import shutil
import subprocess
import uuid

import pytest

from tests.integration.conftest import run_cli

pytestmark = pytest.mark.integration


def single_line(result):
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "unexpected" not in lines[0] and "Traceback" not in result.stderr
    return lines[0]


@pytest.fixture
def library(tmp_path):
    folder = tmp_path / "library"
    folder.mkdir()
    for n in range(3):
        (folder / f"guide{n}.md").write_text(
            f"# Guide {n}\n\nThe torque setting for bolt B{n} is {40 + n} newton metres.\n"
        )
    return folder


def test_filter_and_collection_names_that_match_nothing(tmp_path, library):
    env = dict(os.environ, RAG_HOME=str(tmp_path / "home"))
    assert run_cli("ingest", str(library), env=env).returncode == 0
    asked = run_cli("rag", "ask", "torque for bolt B1?", "--where", "path:*.pdf", env=env)
    assert asked.returncode == 2
    line = single_line(asked)
    assert "no stored file" in line and "*.pdf" in line
    assert "do not contain the answer" not in asked.stdout

    listed = run_cli("ingest", "list", "--collection", "typo", env=env)
    assert listed.returncode == 2
    assert "no collection named 'typo'" in single_line(listed)
    names = [
        c["collection"]
        for c in json.loads(run_cli("ingest", "collections", "--json", env=env).stdout)
    ]
    assert names == ["default"]
    assert not (tmp_path / "home" / "manifests" / "typo.sqlite3").exists()


def can_mount() -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    probe = f"/tmp/mount-probe-{uuid.uuid4().hex[:8]}"
    os.makedirs(probe)
    try:
        ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", probe]).returncode
        if ok == 0:
            subprocess.run(["umount", probe])
        return ok == 0
    finally:
        os.rmdir(probe)


@pytest.mark.embedded_only  # the full disk is under the embedded store
@pytest.mark.skipif(not can_mount(), reason="needs root to mount a small tmpfs")
def test_a_full_disk_gives_one_line_and_loses_nothing(tmp_path, library):
    home = tmp_path / "small-disk"
    home.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(home)], check=True)
    try:
        env = dict(os.environ, RAG_HOME=str(home))
        assert run_cli("ingest", str(library), env=env).returncode == 0
        with open(home / "filler", "wb") as filler:  # fill the disk to the last byte
            try:
                while True:
                    filler.write(b"\0" * (1 << 20))
                    filler.flush()
            except OSError:
                pass
        try:
            while True:
                with open(home / f"crumb-{uuid.uuid4().hex}", "wb") as crumb:
                    crumb.write(b"\0" * 4096)
        except OSError:
            pass

        listed = run_cli("ingest", "list", env=env)
        if listed.returncode != 0:
            single_line(listed)
        else:
            assert "guide1.md" in listed.stdout
        (library / "guide3.md").write_text("# Guide 3\n\nBolt B3 takes 43 newton metres.\n")
        added = run_cli("ingest", str(library), env=env)
        assert added.returncode in (1, 2)
        assert "unexpected" not in added.stderr and "Traceback" not in added.stderr
        asked = run_cli("rag", "ask", "torque for bolt B1?", "--json", "--top-k", "2", env=env)
        if asked.returncode != 0:
            single_line(asked)

        (home / "filler").unlink()
        checked = run_cli("ingest", "check", "--json", env=env)
        assert json.loads(checked.stdout)["clean"], checked.stdout
        again = json.loads(run_cli("ingest", str(library), "--json", env=env).stdout)
        assert again["files"] + again["unchanged"] == 4, again
    finally:
        subprocess.run(["umount", "-l", str(home)])
