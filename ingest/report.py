"""What an ingest run did, file by file (FileOutcome) and in total (IngestReport)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path

from ingest.errors import FileProblem, SkipFile


class FileOutcome(StrEnum):
    """What happened to one file; the value is the word shown in reports and progress lines."""

    STORED = "stored"  # parsed, embedded and stored
    UNCHANGED = "unchanged"  # already stored with the same bytes and settings
    MOVED = (
        "moved"  # its content was already stored (moved, renamed or copied): linked, no embedding
    )
    SKIPPED = "skipped"  # not a document (empty, an image, no text…): nothing to fix
    FAILED = "failed"  # could not be read, parsed or embedded: the reason says what to fix


def outcome_of(problem: FileProblem) -> FileOutcome:
    """A file turned down: skipped when it is no document, failed when it needs fixing."""
    return FileOutcome.SKIPPED if isinstance(problem, SkipFile) else FileOutcome.FAILED


# Progress callback: (file, outcome, chunks stored for it).
Progress = Callable[[Path, FileOutcome, int], None]


@dataclass
class IngestReport:
    """What one ingest run did: stored, unchanged, moved, removed, skipped and failed files, and
    whether it was cancelled before it reached every file."""

    collection: str
    files: int = 0
    chunks: int = 0
    unchanged: int = 0
    moved: int = 0
    removed: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    warnings: list[dict[str, str]] = field(default_factory=list)
    cancelled: bool = False  # stopped on request: files not reached yet were left as they were
    seconds: float = 0.0

    def to_json(self) -> dict:
        data = asdict(self)
        data["seconds"] = round(self.seconds, 3)
        data["collection"] = data.pop("collection")  # last, as it always was
        return data

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def record_problem(self, path: str, outcome: FileOutcome, reason: str) -> None:
        """A skipped or failed file, with the reason shown for it."""
        if outcome == FileOutcome.SKIPPED:
            self.skipped.append({"file": path, "reason": reason})
        else:
            self.failed.append({"file": path, "error": reason})

    def problem_of(self, path: str) -> tuple[FileOutcome, str] | None:
        """How a file of this run was turned down, if it was."""
        for item in self.failed:
            if item["file"] == path:
                return FileOutcome.FAILED, item["error"]
        for item in self.skipped:
            if item["file"] == path:
                return FileOutcome.SKIPPED, item["reason"]
        return None
