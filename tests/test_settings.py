from pathlib import Path

import pytest

from rag.settings import SettingsError, load_settings


def test_defaults_point_at_embedded_models(settings, rag_home):
    assert settings.home == rag_home.resolve()
    assert settings.chroma_path == rag_home.resolve() / "chroma"
    assert Path(settings.llm_model).suffix == ".gguf" and Path(settings.llm_model).is_file()
    assert (Path(settings.embed_model) / "modules.json").is_file()
    assert settings.collection == "default"
    assert settings.threads >= 1
    assert settings.ui_host == "127.0.0.1"


def test_environment_overrides(monkeypatch):
    monkeypatch.setenv("RAG_TOP_K", "7")
    monkeypatch.setenv("RAG_CHUNK_SIZE", "300")
    monkeypatch.setenv("RAG_LLM_MODEL", "/models/llama-3.1-8b.gguf")
    settings = load_settings()
    assert settings.top_k == 7
    assert settings.chunk_size == 300
    assert settings.llm_model == "/models/llama-3.1-8b.gguf"


def test_config_file_in_home_is_read(rag_home, monkeypatch):
    (rag_home / "config.toml").write_text('top_k = 9\ncollection = "papers"\n')
    settings = load_settings()
    assert settings.top_k == 9 and settings.collection == "papers"
    monkeypatch.setenv("RAG_TOP_K", "3")  # the environment wins over the file
    assert load_settings().top_k == 3


def test_explicit_config_file_must_exist(monkeypatch, tmp_path):
    monkeypatch.setenv("RAG_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(SettingsError, match="RAG_CONFIG.*not found"):
        load_settings()


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("RAG_TOP_K", "many", r"^RAG_TOP_K='many': .*integer"),
        ("RAG_TOP_K", "0", r"^RAG_TOP_K='0': .*greater than or equal to 1"),
        ("RAG_N_CTX", "12", r"^RAG_N_CTX"),
        ("RAG_COLLECTION", "a", r"^RAG_COLLECTION='a': collection name 'a' is not valid"),
        (
            "RAG_CHUNK_OVERLAP",
            "500",
            r"^RAG_CHUNK_OVERLAP='500': must be smaller than RAG_CHUNK_SIZE",
        ),
        ("RAG_BOGUS", "1", None),
    ],
)
def test_bad_values_give_one_line_naming_the_setting(monkeypatch, key, value, expected):
    monkeypatch.setenv(key, value)
    if expected is None:  # unknown RAG_* variables in the environment are ignored
        load_settings()
        return
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert "\n" not in message
    assert pytest.importorskip("re").search(expected, message), message


def test_unknown_key_in_config_file_is_an_error(rag_home):
    (rag_home / "config.toml").write_text("topk = 3\n")
    with pytest.raises(SettingsError, match="RAG_TOPK"):
        load_settings()


def test_product_sets_offline_environment():
    import os

    import rag  # noqa: F401

    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert os.environ["ANONYMIZED_TELEMETRY"] == "False"
    assert os.environ["STREAMLIT_BROWSER_GATHER_USAGE_STATS"] == "false"
