"""The benchmark scripts run end to end at a small size (their real figures are in
docs/benchmarks.md): bench/startup.py on the sample documents, bench/add_file.py on a few notes."""

from __future__ import annotations

import pytest

from bench import startup

pytestmark = pytest.mark.store_independent


def test_startup_bench_measures_ask_and_ingest_without_torch(tmp_path):
    result = startup.run(None, 1, tmp_path)

    assert result["backend"] == "onnx" and result["ask_imports_torch"] is False
    assert result["ask_timings"]["first_token_s"] > 0  # the answer path ran, not an error
    for key in ("ask_wall_s", "ask_rss_mb", "ingest_wall_s", "ingest_rss_mb"):
        assert result[key] > 0, key
    assert "ingest_devset_rss_mb" not in result


def test_add_file_bench_starts_one_parser_when_they_are_kept(tmp_path):
    from bench import add_file

    result = add_file.run(3, 4, tmp_path)

    assert result["kept"]["parser_starts"] == 1  # the next files reuse the kept parser
    assert result["not_kept"]["parser_starts"] == 3
    assert result["kept"]["chunks_per_file"] == result["not_kept"]["chunks_per_file"] > 0
