"""The default embedding backend with the real packaged model: ONNX Runtime with int8 weights,
exported once from the local weights, agreeing with sentence-transformers (torch), and a
question path that never imports torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from rag import onnx_model
from rag.models import TorchEncoder, load_onnx_encoder, load_sentence_transformer, model_folder
from rag.settings import load_settings
from tests.conftest import SAMPLES
from tests.integration.conftest import run_cli

pytestmark = pytest.mark.store_independent

PASSAGES = [
    "Between configurable hours the warning chime plays at a reduced level of 45 dB(A).",
    "Docking approach time cut from about 40 seconds to about 25 seconds.",
    "Bahasa Indonesia is now available as a touchscreen language, alongside English and Dutch.",
    "Robot ini tidak boleh dioperasikan di area basah tanpa izin pengawas lokasi.",
    " ".join(["A long passage about lift controllers and LiftLink."] * 60),  # past 256 tokens
]


@pytest.fixture(scope="module")
def encoders():
    settings = load_settings()
    return load_onnx_encoder(settings), TorchEncoder(
        load_sentence_transformer(settings.embed_model)
    )


def test_onnx_vectors_agree_with_torch_and_rank_the_same(encoders):
    onnx, torch = encoders
    texts = PASSAGES + [p.read_text()[:900] for p in SAMPLES.glob("*.md")]
    fast, exact = onnx.encode_passages(texts, 4), torch.encode_passages(texts, 4)
    assert fast.shape == exact.shape and np.allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-4)
    cosines = (fast * exact).sum(axis=1)
    assert cosines.min() > 0.95 and cosines.mean() > 0.98, cosines
    question = "How loud is the chime at night?"
    ranked_fast = np.argsort(-(fast @ onnx.encode_question(question)))
    ranked_exact = np.argsort(-(exact @ torch.encode_question(question)))
    assert ranked_fast[0] == ranked_exact[0] == 0


def test_tokens_match_the_sentence_transformers_tokenizer(encoders):
    onnx, torch = encoders
    for text in PASSAGES:
        ours = onnx.tokenizer.encode(text).ids
        theirs = torch.model.tokenizer(text, truncation=True, max_length=256)["input_ids"]
        assert ours == theirs


def test_export_is_made_once_and_reused(encoders, tmp_path):
    settings = load_settings()
    folder = onnx_model.cache_dir(settings.models_path, model_folder(settings.embed_model), "int8")
    config = folder / "encoder.json"
    assert config.is_file() and (folder / "model.int8.onnx").is_file()
    made = config.stat().st_mtime_ns
    load_onnx_encoder(settings)
    assert config.stat().st_mtime_ns == made
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".export-")]


def test_the_question_path_never_imports_torch(sample_home):
    watch = (
        "import atexit, sys; atexit.register(lambda: print('TORCH', 'torch' in sys.modules, "
        "file=sys.stderr)); from rag.cli import main; sys.argv[0] = 'rag'; sys.exit(main())"
    )
    env = dict(os.environ, RAG_HOME=str(sample_home))
    done = subprocess.run(
        [sys.executable, "-c", watch, "ask", "--json", "What is the night mode chime level?"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["sources"]
    assert "TORCH False" in done.stderr


def test_a_library_embedded_with_onnx_refuses_torch_questions_in_one_line(sample_home):
    env = dict(os.environ, RAG_HOME=str(sample_home), RAG_EMBED_BACKEND="torch")
    done = run_cli("rag", "ask", "What is the night mode chime level?", env=env)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "embedded with onnx-int8" in lines[0]
    assert "RAG_EMBED_BACKEND=onnx" in lines[0]


def test_a_model_the_onnx_backend_cannot_reproduce_is_refused_in_one_line(tmp_path):
    """A sentence-transformers folder with a module the export does not reproduce (a Dense
    layer): one line naming the model and RAG_EMBED_BACKEND=torch, and nothing cached."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense

    settings = load_settings()
    model = load_sentence_transformer(settings.embed_model)
    dense = Dense(in_features=384, out_features=8)
    folder = tmp_path / "with-dense"
    SentenceTransformer(modules=[*model, dense]).save(str(folder))
    cache = tmp_path / "cache"
    with pytest.raises(onnx_model.ExportError, match="RAG_EMBED_BACKEND=torch") as caught:
        onnx_model.ensure_export(cache, folder, "int8", lambda line: None)
    assert "\n" not in str(caught.value) and "with-dense" in str(caught.value)
    assert not any((cache / "onnx").iterdir())


def test_a_damaged_export_is_made_again(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("RAG_MODEL_CACHE", str(tmp_path / "cache"))
    settings = load_settings()
    first = load_onnx_encoder(settings)
    model_file = first.folder / first.config["model_file"]
    model_file.write_bytes(model_file.read_bytes()[:1000])  # cut short, as by a full disk

    again = load_onnx_encoder(settings)

    assert "preparing it again" in capfd.readouterr().err
    vector = again.encode_question("How loud is the chime at night?")
    assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-4


def test_status_names_the_backend_in_use_and_each_collections(sample_home):
    env = dict(os.environ, RAG_HOME=str(sample_home))
    done = run_cli("rag", "status", "--json", env=env)
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert status["embed_backend"] == "onnx-int8"
    assert status["collection_backends"] == {"default": "onnx-int8"}
