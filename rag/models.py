"""Embedding model and LLM factories: the only module importing sentence_transformers, torch and llama_cpp
(rag.onnx_model, the ONNX Runtime backend, needs them once, to export the model)."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

from rag.errors import UserError
from rag.settings import Settings


class ModelError(UserError):
    """A model cannot be loaded; the message names the setting and the fix."""


class ChatModel(Protocol):
    """What the answer path needs from an LLM."""

    n_ctx: int

    def describe(self) -> dict: ...

    def count_tokens(self, text: str) -> int: ...

    def stream_chat(
        self, messages: list[dict[str, str]], max_tokens: int, temperature: float
    ) -> Iterator[str]: ...

    def reset_cache(self) -> None:
        """Forget any prompt cached from earlier answers."""
        ...

    @property
    def queue_length(self) -> int:
        """Answers ahead of a new question: the one being generated and those waiting."""
        ...


class Models:
    """The models of one App, each loaded on first use and shared by every caller (the engine,
    the ingestor, every session of the page); `embedder`/`llm` given here are used as they are."""

    def __init__(self, settings: Settings, embedder=None, llm: ChatModel | None = None) -> None:
        self.settings = settings
        self._embedder = embedder
        self._llm = llm
        self._reranker = None
        self._lock = threading.Lock()

    @property
    def embedder(self):
        with self._lock:
            if self._embedder is None:
                self._embedder = load_embedder(self.settings)
            return self._embedder

    @property
    def embed_backend(self) -> str | None:
        """The name recorded with the vectors this embedder makes, known without loading it
        (None for an embedder given by a caller that names none, such as a test's fake)."""
        if self._embedder is not None:
            return getattr(self._embedder, "backend", None)
        return backend_name(self.settings)

    @property
    def llm(self) -> ChatModel:
        with self._lock:
            if self._llm is None:
                self._llm = load_llm(self.settings)
            return self._llm

    @property
    def reranker(self):
        """The cross-encoder when RAG_RERANK_MODEL is set, else None."""
        with self._lock:
            if self._reranker is None and self.settings.rerank_model:
                self._reranker = load_reranker(self.settings)
            return self._reranker

    @property
    def queue_length(self) -> int:
        """Answers ahead of a new question; 0 while the LLM is not loaded (nothing is loaded to
        find out)."""
        llm = self._llm
        return int(llm.queue_length) if llm is not None else 0


def backend_name(settings: Settings) -> str:
    from rag.onnx_model import QUANTIZE

    return f"onnx-{QUANTIZE}" if settings.embed_backend == "onnx" else "torch"


def load_embedder(settings: Settings):
    """A llama-index embedding model over the configured backend, loaded from local files."""
    from rag.embedding import SentenceEmbedding

    if settings.embed_backend == "onnx":
        encoder = load_onnx_encoder(settings)
    else:
        encoder = TorchEncoder(load_sentence_transformer(settings.embed_model))
    return SentenceEmbedding(
        encoder,
        settings.embed_model,
        settings.embed_batch_size,
        settings.embed_query_prefix,
        settings.embed_passage_prefix,
    )


def load_sentence_transformer(name: str):
    """A SentenceTransformer from a local folder or the local cache; never downloaded."""
    from sentence_transformers import SentenceTransformer

    local = Path(name).expanduser()
    if (name.startswith((".", "/", "~")) or os.sep in name) and not local.exists():
        raise ModelError(
            f"RAG_EMBED_MODEL: {name} not found; point it at a sentence-transformers model folder"
        )
    try:
        return SentenceTransformer(
            str(local) if local.exists() else name, device="cpu", local_files_only=True
        )
    except Exception as exc:
        raise ModelError(
            f"RAG_EMBED_MODEL: cannot load {name} ({type(exc).__name__}: {first_line(exc)}); "
            "models are never downloaded, so point it at a local sentence-transformers folder"
        ) from exc


def load_onnx_encoder(settings: Settings):
    """The model exported to ONNX with int8 weights, exported on first use and cached; a cached
    export that no longer loads (a damaged file) is made again once."""
    from rag import onnx_model

    folder = model_folder(settings.embed_model)
    tell = lambda line: print(line, file=sys.stderr)  # noqa: E731
    for attempt in (1, 2):
        exported = onnx_model.ensure_export(settings.models_path, folder, onnx_model.QUANTIZE, tell)
        try:
            return onnx_model.OnnxEncoder(exported, settings.threads)
        except UserError:
            raise
        except Exception as exc:
            if attempt == 1:
                tell(
                    f"the prepared ONNX model in {exported} does not load ({first_line(exc)}); "
                    "preparing it again"
                )
                shutil.rmtree(exported, ignore_errors=True)
                continue
            raise ModelError(
                f"RAG_EMBED_MODEL: cannot run {folder.name} with ONNX Runtime "
                f"({type(exc).__name__}: {first_line(exc)}); set RAG_EMBED_BACKEND=torch"
            ) from exc
    raise AssertionError("unreachable")


def model_folder(name: str) -> Path:
    """The local folder of an embedding model given as a path or as a cached hub name."""
    local = Path(name).expanduser()
    if local.is_dir():
        return local
    if not (name.startswith((".", "/", "~")) or os.sep in name) or name.count("/") == 1:
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(name, local_files_only=True))
        except Exception:
            pass
    raise ModelError(
        f"RAG_EMBED_MODEL: {name} not found; point it at a sentence-transformers model folder"
    )


class TorchEncoder:
    """sentence-transformers (torch) as an encoder: questions on one thread, passages on all."""

    backend = "torch"

    def __init__(self, model) -> None:
        self.model = model

    def encode_passages(self, texts: list[str], batch_size: int):
        return self.model.encode(
            texts,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )

    def encode_question(self, text: str):
        with one_thread():
            return self.encode_passages([text], 1)[0]


_threads_lock = threading.Lock()
_threads = {"single": 0, "before": 1}  # questions being encoded on one thread; the count before


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Encode a question on one CPU thread. A question is a few dozen tokens: a second thread
    saves a millisecond on an idle machine, and on a busy one its threads wait for each other
    (measured on 2 busy cores: 13 ms with one thread, 290-360 ms with two; bench/scale.py).
    Passages, encoded in batches, keep every thread."""
    import torch

    with _threads_lock:
        if _threads["single"] == 0:
            _threads["before"] = torch.get_num_threads()
            torch.set_num_threads(1)
        _threads["single"] += 1
    try:
        yield
    finally:
        with _threads_lock:
            _threads["single"] -= 1
            if _threads["single"] == 0:
                torch.set_num_threads(_threads["before"])


def load_chunk_tokenizer(settings: Settings) -> Callable[[str], list] | None:
    """The embedding model's own tokenizer, for sizing chunks; light (no torch) when possible."""
    folder = Path(settings.embed_model).expanduser()
    if (folder / "tokenizer.json").is_file():
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        tokenizer.no_truncation()
        tokenizer.no_padding()
        return lambda text: tokenizer.encode(text, add_special_tokens=False).ids
    try:
        from transformers import AutoTokenizer

        auto = AutoTokenizer.from_pretrained(settings.embed_model, local_files_only=True)
        return auto.tokenize
    except Exception:  # no tokenizer available: fall back to llama-index's default counter
        return None


class CrossEncoderReranker:
    """Re-orders candidate passages with a sentence-transformers CrossEncoder (local folder)."""

    def __init__(self, model) -> None:
        self.model = model

    def rerank(self, question: str, sources: list) -> list:
        if not sources:
            return sources
        scores = self.model.predict([(question, s.text) for s in sources], show_progress_bar=False)
        order = sorted(range(len(sources)), key=lambda i: -float(scores[i]))
        return [sources[i] for i in order]


def load_reranker(settings: Settings) -> CrossEncoderReranker:
    from sentence_transformers import CrossEncoder

    folder = Path(settings.rerank_model).expanduser()
    if not folder.is_dir():
        raise ModelError(
            f"RAG_RERANK_MODEL: {folder} not found; point it at a local CrossEncoder folder "
            "or unset it"
        )
    try:
        return CrossEncoderReranker(CrossEncoder(str(folder), device="cpu", local_files_only=True))
    except Exception as exc:
        raise ModelError(f"RAG_RERANK_MODEL: cannot load {folder} ({first_line(exc)})") from exc


def check_gguf(path: str) -> Path:
    """The LLM file must exist and be a GGUF file."""
    gguf = Path(path).expanduser()
    if not gguf.is_file():
        raise ModelError(f"RAG_LLM_MODEL: {gguf} not found; point it at a .gguf model file")
    with gguf.open("rb") as fh:
        magic = fh.read(4)
    if magic != b"GGUF":
        raise ModelError(f"RAG_LLM_MODEL: {gguf} is not a GGUF file; use a llama.cpp .gguf model")
    return gguf


class LlamaCppChat:
    """An in-process llama.cpp model. Its chat template comes from the GGUF metadata.

    One llama.cpp context cannot run two completions at once, so generation holds a lock.
    """

    def __init__(self, settings: Settings) -> None:
        from llama_cpp import Llama

        path = check_gguf(settings.llm_model)
        try:
            with quiet_stderr():
                self._llama = Llama(
                    model_path=str(path),
                    n_ctx=settings.n_ctx,
                    n_threads=settings.threads,
                    n_threads_batch=settings.threads,
                    n_batch=settings.n_batch,
                    n_ubatch=settings.n_batch,
                    n_gpu_layers=settings.n_gpu_layers,
                    use_mmap=True,
                    verbose=False,
                )
        except Exception as exc:
            raise ModelError(
                f"RAG_LLM_MODEL: cannot load {path} ({first_line(exc)}); "
                "check that it is a complete GGUF file and RAG_N_CTX fits in memory"
            ) from exc
        self.path = path
        self._formatter = chat_formatter(self._llama)
        self.threads = settings.threads
        self.n_ctx = self._llama.n_ctx()
        self.lock = threading.Lock()
        self._queue_lock = threading.Lock()
        self._waiting = 0

    @property
    def metadata(self) -> dict[str, str]:
        return dict(self._llama.metadata)

    @property
    def chat_format(self) -> str | None:
        return self._llama.chat_format

    def describe(self) -> dict:
        """What `rag model info` shows: file, architecture, sizes, quantization, template."""
        meta = self.metadata
        arch = meta.get("general.architecture", "unknown")
        template = meta.get("tokenizer.chat_template", "")
        return {
            "file": str(self.path),
            "name": meta.get("general.name", self.path.stem),
            "architecture": arch,
            "parameters": meta.get("general.size_label"),
            "quantization": GGUF_FILE_TYPES.get(meta.get("general.file_type", ""), "unknown"),
            "trained_context": int(meta.get(f"{arch}.context_length", 0)) or None,
            "n_ctx": self.n_ctx,
            "threads": self.threads,
            "chat_format": self.chat_format,
            "chat_template_from_gguf": bool(template),
            "file_size_mb": round(self.path.stat().st_size / 1048576, 1),
        }

    def count_tokens(self, text: str) -> int:
        return len(self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def stream_chat(
        self, messages: list[dict[str, str]], max_tokens: int, temperature: float
    ) -> Iterator[str]:
        with self._queue_lock:
            self._waiting += 1
        try:
            self.lock.acquire()
        finally:
            with self._queue_lock:
                self._waiting -= 1
        try:
            yield from self._stream(messages, max_tokens, temperature)
        finally:
            self.lock.release()

    def reset_cache(self) -> None:
        """Forget the prompt cached from the last answer (benchmarks measure a cold prefill)."""
        with self.lock:
            self._llama.reset()

    @property
    def queue_length(self) -> int:
        """Questions ahead of a new one: the one being answered and those waiting."""
        return self._waiting + (1 if self.lock.locked() else 0)

    def _stream(self, messages, max_tokens: int, temperature: float) -> Iterator[str]:
        options = {
            "max_tokens": max_tokens,
            "temperature": temperature,
            "repeat_penalty": 1.1,
            "stream": True,
        }
        if self._formatter is None:  # no template in the GGUF: llama-cpp-python's guess
            chunks = self._llama.create_chat_completion(messages=messages, **options)
            pieces = (chunk["choices"][0]["delta"].get("content") for chunk in chunks)
        else:
            # The GGUF's own template, then plain completion: the same per-token path as raw
            # llama-cpp-python, without the chat wrapper's per-chunk conversion.
            prompt = self._formatter(messages=messages).prompt
            tokens = self._llama.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
            chunks = self._llama.create_completion(prompt=tokens, **options)
            pieces = (chunk["choices"][0]["text"] for chunk in chunks)
        for piece in pieces:
            if piece:
                yield piece


# llama.cpp's `general.file_type` codes for the common quantizations.
GGUF_FILE_TYPES = {
    "0": "F32",
    "1": "F16",
    "2": "Q4_0",
    "3": "Q4_1",
    "7": "Q8_0",
    "8": "Q5_0",
    "9": "Q5_1",
    "10": "Q2_K",
    "11": "Q3_K_S",
    "12": "Q3_K_M",
    "13": "Q3_K_L",
    "14": "Q4_K_S",
    "15": "Q4_K_M",
    "16": "Q5_K_S",
    "17": "Q5_K_M",
    "18": "Q6_K",
    "32": "BF16",
}


def chat_formatter(llama):
    """A formatter for the chat template stored in the GGUF (None when the file has none)."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llama.metadata.get("tokenizer.chat_template")
    if not template:
        return None
    eos = llama.detokenize([llama.token_eos()]).decode("utf-8", "ignore")
    bos = llama.detokenize([llama.token_bos()]).decode("utf-8", "ignore")
    return Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)


class OpenAICompatibleChat:
    """A model served elsewhere (llama.cpp's server, vLLM) through the OpenAI chat API."""

    def __init__(self, settings: Settings) -> None:
        from llama_index.llms.openai_like import OpenAILike

        self.url = settings.llm_base_url.rstrip("/")
        self.n_ctx = settings.n_ctx
        self.threads = 0
        check_server(self.url, settings.llm_api_key)
        self._llm = OpenAILike(
            model=settings.llm_api_model,
            api_base=self.url,
            api_key=settings.llm_api_key or "not-needed",
            is_chat_model=True,
            context_window=settings.n_ctx,
            timeout=settings.llm_timeout,
            max_retries=0,
        )

    def reset_cache(self) -> None:
        """The server keeps its own cache; nothing to forget here."""

    @property
    def queue_length(self) -> int:
        """The server queues requests itself; none wait here."""
        return 0

    def count_tokens(self, text: str) -> int:
        """An upper estimate (no local tokenizer): about 3 characters per token."""
        return len(text) // 3 + 1

    def describe(self) -> dict:
        return {"backend": "openai", "url": self.url, "model": self._llm.model, "n_ctx": self.n_ctx}

    def stream_chat(
        self, messages: list[dict[str, str]], max_tokens: int, temperature: float
    ) -> Iterator[str]:
        from llama_index.core.llms import ChatMessage

        chat = [ChatMessage(role=m["role"], content=m["content"]) for m in messages]
        try:
            for part in self._llm.stream_chat(chat, max_tokens=max_tokens, temperature=temperature):
                if part.delta:
                    yield part.delta
        except Exception as exc:
            raise ModelError(
                f"the LLM server at {self.url} failed ({type(exc).__name__}: {first_line(exc)})"
            ) from exc


def check_server(url: str, key: str) -> None:
    """Fail early, in one line naming the URL, when the server does not answer."""
    import httpx

    try:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        httpx.get(f"{url}/models", timeout=5.0, headers=headers).raise_for_status()
    except Exception as exc:
        raise ModelError(
            f"cannot reach the LLM server at {url} ({type(exc).__name__}); start it (e.g. "
            "`python -m llama_cpp.server --model MODEL.gguf --host 127.0.0.1 --port 8080`), fix "
            "RAG_LLM_BASE_URL, or set RAG_LLM_BACKEND=llama-cpp"
        ) from exc


def load_llm(settings: Settings) -> ChatModel:
    if settings.llm_backend == "openai":
        return OpenAICompatibleChat(settings)
    return LlamaCppChat(settings)


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence llama.cpp's C-level log lines while a model loads."""
    try:
        fd = os.dup(2)
    except OSError:
        yield
        return
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(fd, 2)
            os.close(fd)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
