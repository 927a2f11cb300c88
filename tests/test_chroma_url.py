"""RAG_CHROMA_URL names a Chroma server; RAG_CHROMA_HOST/PORT still work and must agree with it."""

import pytest

import ingest.cli
import rag.cli
from rag.settings import SettingsError, load_settings
from rag.store import Store, location


@pytest.mark.parametrize(
    ("url", "server", "host", "port"),
    [
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000", "127.0.0.1", 8000),
        ("http://chroma.internal", "http://chroma.internal:8000", "chroma.internal", 8000),
        (
            "https://Chroma.Example.com/",
            "https://chroma.example.com:443",
            "chroma.example.com",
            443,
        ),
        ("https://10.0.0.5:9443", "https://10.0.0.5:9443", "10.0.0.5", 9443),
        ("http://[::1]:8001", "http://[::1]:8001", "::1", 8001),
        (" http://localhost:8000 ", "http://localhost:8000", "localhost", 8000),
    ],
)
def test_a_url_names_the_server(monkeypatch, url, server, host, port):
    monkeypatch.setenv("RAG_CHROMA_URL", url)
    settings = load_settings()
    assert settings.chroma_server == settings.chroma_url == server
    assert (settings.chroma_host, settings.chroma_port) == (host, port)
    assert location(settings) == server
    assert not Store(settings).embedded


def test_host_and_port_still_name_a_server(monkeypatch):
    monkeypatch.setenv("RAG_CHROMA_HOST", "127.0.0.1")
    monkeypatch.setenv("RAG_CHROMA_PORT", "8123")
    settings = load_settings()
    assert settings.chroma_server == "http://127.0.0.1:8123" and settings.chroma_url is None
    assert not Store(settings).embedded


def test_no_server_means_the_embedded_store(rag_home):
    settings = load_settings()
    assert settings.chroma_server is None
    assert location(settings) == str(settings.chroma_path)
    assert Store(settings).embedded


def test_url_and_host_port_that_agree_are_fine(monkeypatch):
    monkeypatch.setenv("RAG_CHROMA_URL", "http://127.0.0.1:8123")
    monkeypatch.setenv("RAG_CHROMA_HOST", "127.0.0.1")
    monkeypatch.setenv("RAG_CHROMA_PORT", "8123")
    assert load_settings().chroma_server == "http://127.0.0.1:8123"


@pytest.mark.parametrize(("host", "port"), [("127.0.0.2", None), (None, "8124")])
def test_url_and_host_port_that_disagree_are_one_line(monkeypatch, host, port):
    monkeypatch.setenv("RAG_CHROMA_URL", "http://127.0.0.1:8123")
    if host:
        monkeypatch.setenv("RAG_CHROMA_HOST", host)
    if port:
        monkeypatch.setenv("RAG_CHROMA_PORT", port)
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("RAG_CHROMA_URL='http://127.0.0.1:8123' and RAG_CHROMA_HOST")
    assert "name different servers" in message


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("127.0.0.1:8000", "must start with http:// or https://"),
        ("chroma.internal", "must start with http:// or https://"),
        ("ftp://chroma.internal", "must start with http:// or https://"),
        ("http://", "names no host"),
        ("http://chroma.internal:80000", "out of range"),
        ("http://chroma.internal:port", "Port"),
        ("http://chroma.internal:0", "port 0"),
        ("http://user:secret@chroma.internal:8000", "user name or password"),
        ("http://chroma.internal:8000/api/v2", "only a scheme, host and port"),
        ("http://chroma.internal:8000?tenant=x", "only a scheme, host and port"),
    ],
)
def test_a_malformed_url_is_one_line_naming_the_setting_and_an_example(monkeypatch, url, problem):
    monkeypatch.setenv("RAG_CHROMA_URL", url)
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"RAG_CHROMA_URL={url!r} is not a Chroma server URL")
    assert problem in message and message.endswith("give one like http://127.0.0.1:8000")


def test_the_commands_print_a_malformed_url_as_one_line(monkeypatch, capsys):
    monkeypatch.setenv("RAG_CHROMA_URL", "localhost:8000")
    assert rag.cli.main(["status"]) == 2
    assert ingest.cli.main(["list"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2, err
    assert all("RAG_CHROMA_URL='localhost:8000'" in line for line in err.splitlines())
    assert "Traceback" not in err


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_an_unreachable_url_is_one_line_naming_it(monkeypatch, capsys, scheme):
    monkeypatch.setenv("RAG_CHROMA_URL", f"{scheme}://127.0.0.1:9")
    assert rag.cli.main(["status"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert f"cannot reach the Chroma server at {scheme}://127.0.0.1:9 " in err
    assert "chroma run --path DIR --host 127.0.0.1 --port 9" in err
    assert "unset RAG_CHROMA_URL" in err
