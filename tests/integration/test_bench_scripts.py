"""The benchmark scripts of this issue run end to end at a small size (their real figures are in
docs/benchmarks.md): bench/startup.py on the sample documents."""

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
