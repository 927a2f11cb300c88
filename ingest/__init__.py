"""Turn files and folders into searchable chunks in the store."""

from ingest.pipeline import Ingestor, IngestReport, MissingPathError, discover

__all__ = ["IngestReport", "Ingestor", "MissingPathError", "discover"]
