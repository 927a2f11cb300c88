"""The OpenAI-compatible backend against a real llama.cpp server on 127.0.0.1."""

import json
import os
import subprocess

import pytest

from rag.settings import load_settings
from tests.conftest import BIN
from tests.integration.conftest import free_port, run_cli, wait_for_http

pytestmark = [pytest.mark.integration, pytest.mark.store_independent]


@pytest.fixture(scope="module")
def llama_server():
    port = free_port()
    model = load_settings().llm_model
    server = subprocess.Popen(
        [
            str(BIN / "python"),
            "-m",
            "llama_cpp.server",
            "--model",
            model,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "4096",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/v1/models", timeout=120, process=server)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_rag_ask_answers_through_the_server(sample_home, llama_server):
    env = dict(
        os.environ,
        RAG_HOME=str(sample_home),
        RAG_LLM_BACKEND="openai",
        RAG_LLM_BASE_URL=llama_server,
    )
    result = run_cli(
        "rag", "ask", "How many days of paid annual leave do employees get?", "--json", env=env
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["answer"].strip()
    assert data["sources"][0]["file"].endswith("employee-handbook.pdf")
    streamed = run_cli("rag", "ask", "What does error code E-214 mean?", env=env)
    assert streamed.returncode == 0 and "Sources:" in streamed.stdout


def test_unreachable_server_is_one_line_naming_the_url(sample_home):
    url = f"http://127.0.0.1:{free_port()}/v1"
    env = dict(
        os.environ, RAG_HOME=str(sample_home), RAG_LLM_BACKEND="openai", RAG_LLM_BASE_URL=url
    )
    result = run_cli("rag", "ask", "How many days of paid annual leave do employees get?", env=env)
    assert result.returncode == 2
    assert (
        result.stderr.count("\n") == 1 and url in result.stderr and "Traceback" not in result.stderr
    )
