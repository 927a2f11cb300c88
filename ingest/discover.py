"""Which files to ingest: folders walked, links and odd names judged, unreadable files turned down.

Paths are kept as they were found (a file named through a link keeps the link's name), so
stored records match what the user sees on disk.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from ingest.errors import LoadError, SkipFile
from ingest.names import escape_bytes, is_utf8, printable, skipped
from rag.errors import UserError


class MissingPathError(UserError):
    """A path given on the command line does not exist."""


def discover(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand files and folders (recursively, skipping hidden entries) into a sorted file list.

    Every file keeps the path it was found under. A symbolic link inside a folder is followed
    only when its target lies inside one of the folders given; a link that leaves them, and a
    name that is not UTF-8, come back as a SkippedPath whose reason check_readable() raises.
    """
    found: dict[str, Path] = {}
    roots = [Path(p).expanduser() for p in paths]
    missing = [printable(str(p)) for p in roots if not p.exists() and not p.is_symlink()]
    if missing:
        raise MissingPathError(f"no such file or folder: {', '.join(missing)}; check the path")
    folders = [absolute(root) for root in roots if root.is_dir()]

    def add(path: Path) -> None:
        if not is_utf8(str(path)):
            kind = "folder" if path.is_dir() else "file"
            path = skipped(escape_bytes(str(path)), SkipFile(bad_name_reason(kind)))
        found.setdefault(str(path), path)

    for root in roots:
        if not root.is_dir():
            add(absolute(root))
            continue
        top = absolute(root)
        if not is_utf8(str(top)):
            add(top)
            continue
        for folder, dirs, names in os.walk(top, followlinks=False):
            entered = []
            for name in sorted(dirs):
                candidate = Path(folder, name)
                if name.startswith("."):
                    continue
                if not is_utf8(name):
                    add(candidate)
                elif candidate.is_symlink():  # not entered: its files are found where they lie
                    if outside(candidate, folders):
                        add(link_leaves(candidate))
                else:
                    entered.append(name)
            dirs[:] = entered
            for name in sorted(names):
                candidate = Path(folder, name)
                if name.startswith("."):
                    continue
                if is_utf8(name) and candidate.is_symlink() and outside(candidate, folders):
                    candidate = link_leaves(candidate)
                add(candidate)
    return sorted(found.values())


def outside(link: Path, folders: list[Path]) -> bool:
    """True when a link's target exists and lies outside all the folders being ingested."""
    try:
        target = link.resolve(strict=True)
    except (OSError, RuntimeError):
        return False  # a broken link or a loop: check_readable reports it under its own name
    return not any(target.is_relative_to(folder) for folder in folders)


def link_leaves(link: Path) -> Path:
    target = escape_bytes(str(link.resolve()))
    return skipped(
        link,
        SkipFile(
            f"symbolic link to {target}, outside the folders being ingested; "
            "ingest the target by its own path, or copy it into the folder"
        ),
    )


def bad_name_reason(kind: str) -> str:
    return (
        f"{kind} name is not valid UTF-8; rename it (e.g. convmv -f latin1 -t utf8 --notest NAME)"
    )


def absolute(path: Path) -> Path:
    """The path a file is stored under: a folder by its real path, anything else by its own
    name in its folder's real path (a file named through a link keeps the link's name)."""
    path = path.expanduser()
    if path.is_dir():
        return path.resolve()
    try:
        parent = path.parent.resolve(strict=True)
    except (OSError, RuntimeError):
        return Path(os.path.abspath(path))
    return parent / path.name


def root_paths(paths: Iterable[str | os.PathLike]) -> list[str]:
    """The given files and folders as discover() stores them, for matching stored records."""
    return [str(absolute(Path(p))) for p in paths]


def check_readable(path: Path, max_file_mb: float) -> os.stat_result:
    """Reject what cannot be a document before reading it: what discover() already turned down,
    dangling links, folders, huge files."""
    problem = getattr(path, "problem", None)
    if problem is not None:
        raise problem
    if not path.exists():
        raise LoadError("broken symbolic link or link loop; fix or remove the link")
    if not path.is_file():
        raise SkipFile("not a regular file")
    stat = path.stat()
    size_mb = stat.st_size / (1024 * 1024)
    if size_mb > max_file_mb:
        raise LoadError(
            f"file is {size_mb:.0f} MB, over the {max_file_mb:g} MB limit; "
            "raise RAG_MAX_FILE_MB to ingest it"
        )
    if not os.access(path, os.R_OK):
        raise LoadError("permission denied; make the file readable (chmod +r)")
    return stat
