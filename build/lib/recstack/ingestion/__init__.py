"""Sources of records → validation → the operational store, with a quarantine for what fails."""

from recstack.ingestion.pipeline import IngestOptions, RawBatch, ingest

__all__ = ["IngestOptions", "RawBatch", "ingest"]
