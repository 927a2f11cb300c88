"""The ONNX Runtime embedding backend: the only module importing onnxruntime.

The packaged sentence-transformers model is exported once on this machine (torch.onnx, from the
local weights; nothing is downloaded), quantized to int8 with ONNX Runtime's dynamic quantization,
and cached under RAG_HOME/models/onnx (RAG_MODEL_CACHE). Encoding then needs only onnxruntime and the `tokenizers`
library: no torch, so a question costs a fraction of the start-up time and memory.

optimum (sentence-transformers' own `backend="onnx"` path) is not used: optimum-onnx 0.1 needs
transformers < 4.58 and sentence-transformers 6 needs transformers 5.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from rag.errors import UserError

# Bump when the exported files change meaning: every cached export is then made again.
EXPORT_VERSION = 2
QUANTIZE = "int8"  # what the product exports: the backend is named "onnx-" + this
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
POOLINGS = ("mean", "cls", "max", "lasttoken")


class ExportError(UserError):
    """The model cannot be exported to ONNX; the message names the fix."""


def export_key(model_dir: Path, quantize: str) -> str:
    """Names one export: the model folder, its weights' sizes and times, the format version."""
    parts = [str(model_dir.resolve()), quantize, str(EXPORT_VERSION)]
    for path in sorted(model_dir.rglob("*")):
        if path.is_file() and (path.name in WEIGHT_FILES or path.suffix == ".json"):
            stat = path.stat()
            parts.append(f"{path.relative_to(model_dir)}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def cache_dir(models: Path, model_dir: Path, quantize: str) -> Path:
    return models / "onnx" / f"{model_dir.name}-{quantize}-{export_key(model_dir, quantize)}"


def ensure_export(
    models: Path, model_dir: Path, quantize: str, tell: Callable[[str], None]
) -> Path:
    """The folder holding the exported model, made now if it is not cached yet (a few seconds)."""
    target = cache_dir(models, model_dir, quantize)
    if (target / "encoder.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tell(f"preparing the ONNX embedding model once ({quantize}); cached in {target}")
    work = Path(tempfile.mkdtemp(prefix=".export-", dir=target.parent))
    try:
        export_apart(model_dir, work, quantize)
        try:
            work.rename(target)  # atomic: a reader sees the whole export or none
        except OSError:  # another process finished the same export first
            if not (target / "encoder.json").is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def export_apart(model_dir: Path, out: Path, quantize: str) -> None:
    """Export in a child process: torch and the exporters (1.8 GB at their peak) are gone when it
    ends, and the command that asked for the model never holds them."""
    command = [sys.executable, "-m", "rag.onnx_model", str(model_dir), str(out), quantize]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        last = lines[-1] if lines else f"exit status {done.returncode}"
        if last.startswith("ExportError: "):  # the child's own one-line reason
            raise ExportError(last.removeprefix("ExportError: "))
        raise ExportError(
            f"RAG_EMBED_MODEL: exporting {model_dir.name} to ONNX failed ({last}); "
            "set RAG_EMBED_BACKEND=torch"
        )


def export(model_dir: Path, out: Path, quantize: str) -> None:
    """Export the sentence-transformers model in `model_dir` to `out` (torch is needed here only);
    the exporters' advice to developers (tracer warnings, quantization tips) is not shown."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _export(model_dir, out, quantize)
    finally:
        root.setLevel(level)


def _export(model_dir: Path, out: Path, quantize: str) -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
    transformer, pooling = model[0], (model[1] if len(model) > 1 else None)
    mode = getattr(pooling, "pooling_mode", "mean") if pooling is not None else "mean"
    extra = [type(module).__name__ for module in list(model)[2:]]
    if not isinstance(mode, str) or mode not in POOLINGS or any(n != "Normalize" for n in extra):
        raise ExportError(
            f"RAG_EMBED_MODEL: {model_dir.name} uses {mode} pooling and modules {extra}, which the "
            "ONNX backend does not reproduce; set RAG_EMBED_BACKEND=torch"
        )
    tokenizer = model.tokenizer
    tokenizer.save_pretrained(str(out / "tokenizer"))
    if not (out / "tokenizer" / "tokenizer.json").is_file():
        raise ExportError(
            f"RAG_EMBED_MODEL: {model_dir.name} has no fast tokenizer (tokenizer.json); "
            "set RAG_EMBED_BACKEND=torch"
        )
    names = [
        n
        for n in tokenizer.model_input_names
        if n in ("input_ids", "attention_mask", "token_type_ids")
    ]
    network = transformer.auto_model.eval()

    class Encoder(torch.nn.Module):
        """Keyword arguments in, token states out: the form torch.onnx can trace."""

        def __init__(self) -> None:
            super().__init__()
            self.network = network

        def forward(self, *inputs):
            return self.network(**dict(zip(names, inputs, strict=True))).last_hidden_state

    sample = tokenizer(
        ["an example passage", "a second, longer example passage"],
        padding=True,
        return_tensors="pt",
    )
    axes = {name: {0: "batch", 1: "tokens"} for name in names}
    fp32 = out / "model.onnx"
    with torch.no_grad():
        torch.onnx.export(
            Encoder(),
            tuple(sample[name] for name in names),
            str(fp32),
            input_names=names,
            output_names=["token_states"],
            dynamic_axes=axes | {"token_states": {0: "batch", 1: "tokens"}},
            opset_version=17,
            dynamo=False,
        )
    model_file = fp32
    if quantize == "int8":
        model_file = out / "model.int8.onnx"
        quantize_int8(fp32, model_file)
        fp32.unlink()
    config = {
        "model_file": model_file.name,
        "inputs": names,
        "pooling": mode,
        "normalize": "Normalize" in extra,
        "max_tokens": int(model.max_seq_length or tokenizer.model_max_length),
        "pad_id": int(tokenizer.pad_token_id or 0),
        "pad_token": str(tokenizer.pad_token or "[PAD]"),
        "dimensions": int(model.get_embedding_dimension()),
        "source": str(model_dir),
        "quantize": quantize,
    }
    (out / "encoder.json").write_text(json.dumps(config, indent=1))


def quantize_int8(source: Path, target: Path) -> None:
    """Dynamic int8 quantization of the matrix multiplications (one scale per output channel)
    and of the word-embedding table (Gather): 21 MB against 86 in fp32 and 56 with the table kept
    in fp32, at the same agreement with torch (mean cosine 0.993)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(source),
        str(target),
        weight_type=QuantType.QInt8,
        per_channel=True,  # one scale per tensor: mean cosine to torch 0.937 (min 0.81); per channel 0.993
        op_types_to_quantize=["MatMul", "Gather"],
    )


class OnnxEncoder:
    """Encodes texts with an exported model, one text per run, pooled and normalised as the
    sentence-transformers model does.

    Dynamic int8 quantization scales each run's activations by their range over the whole input,
    so a text encoded in a batch would get a vector that depends on its neighbours (and on their
    padding): cosine 0.992 between the same chunk embedded in two batchings. Alone, a text always
    gets the same vector, wherever and with whatever it is embedded. Runs are spread over
    `threads` worker threads sharing one single-threaded session, which is also faster than
    batches here (the development set's chunks on 2 cores: 161 texts/s, against 141 one at a time
    on a 2-thread session and 132 in batches of 32) and holds one copy of the model."""

    def __init__(self, folder: Path, threads: int) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.folder = folder
        self.config = json.loads((folder / "encoder.json").read_text())
        self.threads = threads
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer" / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=self.config["max_tokens"])
        self.tokenizer.no_padding()
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.enable_mem_pattern = False  # kept per input shape; ours vary
        self.session = ort.InferenceSession(  # a broken export fails here, not on a question
            str(folder / self.config["model_file"]), options, providers=["CPUExecutionProvider"]
        )
        self._workers: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    @property
    def dimensions(self) -> int:
        return int(self.config["dimensions"])

    @property
    def backend(self) -> str:
        return f"onnx-{self.config['quantize']}"

    def encode_passages(self, texts: list[str], batch_size: int) -> np.ndarray:
        """Passages; `batch_size` is not used: every text is encoded alone (see the class)."""
        return self.encode(texts)

    def encode_question(self, text: str) -> np.ndarray:
        return self.encode([text])[0]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of `texts`, the longest first so that the workers finish together."""
        encodings = self.tokenizer.encode_batch(list(texts))
        vectors = np.zeros((len(encodings), self.dimensions), dtype=np.float32)
        if len(encodings) == 1 or self.threads == 1:
            for i, encoding in enumerate(encodings):
                vectors[i] = self._run(encoding)
            return vectors
        order = sorted(range(len(encodings)), key=lambda i: -len(encodings[i].ids))
        done = self.workers().map(lambda i: (i, self._run(encodings[i])), order)
        for i, vector in done:
            vectors[i] = vector
        return vectors

    def workers(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._workers is None:
                self._workers = ThreadPoolExecutor(self.threads, thread_name_prefix="onnx-encode")
            return self._workers

    def _run(self, encoding) -> np.ndarray:
        ids = np.array([encoding.ids], dtype=np.int64)
        feed = {
            "input_ids": ids,
            "attention_mask": np.ones_like(ids),
            "token_type_ids": np.array([encoding.type_ids], dtype=np.int64),
        }
        states = self.session.run(None, {name: feed[name] for name in self.config["inputs"]})[0]
        return pool(
            states, feed["attention_mask"], self.config["pooling"], self.config["normalize"]
        )[0]


def pool(states: np.ndarray, mask: np.ndarray, mode: str, normalize: bool) -> np.ndarray:
    """Token states -> one vector per text, as sentence-transformers' Pooling module does."""
    weights = mask[..., None].astype(np.float32)
    if mode == "cls":
        vectors = states[:, 0]
    elif mode == "max":
        vectors = np.where(weights > 0, states, -1e9).max(axis=1)
    elif mode == "lasttoken":
        vectors = states[np.arange(len(states)), mask.sum(axis=1) - 1]
    else:
        vectors = (states * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
    if normalize:
        vectors = vectors / np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
    return vectors.astype(np.float32)


if __name__ == "__main__":  # the child process of export_apart(): MODEL_DIR OUT QUANTIZE
    export(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3])
