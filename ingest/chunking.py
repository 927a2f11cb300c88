"""Loaded file -> chunks (llama-index nodes) with file, page, title and heading metadata."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from llama_index.core import Document
from llama_index.core.node_parser import MarkdownNodeParser, SentenceSplitter
from llama_index.core.schema import BaseNode, MetadataMode

from ingest.document import LoadedFile
from rag.models import load_chunk_tokenizer
from rag.settings import Settings

# Stored with each chunk but kept out of the embedded and prompted text.
HEADING_SEP = "\x1f"
HIDDEN_KEYS = ["file", "file_name", "page", "sha256", "parser", "chunk_index", "header_path"]

# The splitter tokenizes a whole text before splitting it: handing it parts of at most
# PART_CHARS characters keeps its memory flat however much text one page or section holds.
PART_CHARS = 50_000
# Runs of characters without whitespace longer than this are broken with spaces: the splitter
# has no other place to cut them, and would either count their tokens one character at a time
# or keep them whole in one huge chunk (WordPiece tokenizers count a word of over 100
# characters as one unknown token).
MAX_WORD_CHARS = 100
LONG_WORD = re.compile(rf"\S{{{MAX_WORD_CHARS + 1},}}")


class Chunker:
    """Splits documents into chunks sized in the embedding model's own tokens."""

    def __init__(
        self, chunk_size: int, chunk_overlap: int, tokenizer=None, embed_headings: bool = True
    ) -> None:
        # With embed_headings the title and heading path are part of the embedded text.
        self.hidden = HIDDEN_KEYS if embed_headings else [*HIDDEN_KEYS, "title", "heading"]
        self.markdown = MarkdownNodeParser(header_path_separator=HEADING_SEP)
        self.splitter = SentenceSplitter(
            chunk_size=chunk_size,
            chunk_overlap=chunk_overlap,
            tokenizer=tokenizer,
            include_prev_next_rel=False,
        )

    @classmethod
    def from_settings(cls, settings: Settings, tokenizer=None) -> Chunker:
        """The chunker the settings describe, counting in `tokenizer` (default: the embedding
        model's own, so chunks fit what the model reads)."""
        if tokenizer is None:
            tokenizer = load_chunk_tokenizer(settings)
        return cls(settings.chunk_size, settings.chunk_overlap, tokenizer, settings.embed_headings)

    def chunk(
        self, path: Path, loaded: LoadedFile, sha256: str, key: str | None = None
    ) -> list[BaseNode]:
        """Split into nodes whose ids are `key-00000`, `key-00001`… (key: the content's key)."""
        documents = []
        for section in loaded.sections:
            metadata = {
                "file": str(path),
                "file_name": path.name,
                "title": loaded.title,
                "sha256": sha256,
                "parser": loaded.parser,
            }
            if section.page is not None:
                metadata["page"] = section.page
            if section.heading:
                metadata["heading"] = section.heading
            document = Document(
                text=section.text,
                metadata=metadata,
                excluded_embed_metadata_keys=list(self.hidden),
                excluded_llm_metadata_keys=list(self.hidden),
            )
            if section.markdown:
                for node in self.markdown.get_nodes_from_documents([document]):
                    heading = section_heading(node.metadata.pop("header_path", ""), node.text)
                    if heading:
                        node.metadata["heading"] = heading
                    documents.extend(self.bounded(node))
            else:
                documents.extend(self.bounded(document))
        nodes = self.splitter.get_nodes_from_documents(documents)
        key = key or hashlib.sha1(f"{path}\0{sha256}".encode()).hexdigest()[:24]
        kept: list[BaseNode] = []
        for node in nodes:
            if not node.get_content().strip():
                continue
            node.metadata["chunk_index"] = len(kept)
            node.excluded_embed_metadata_keys = list(self.hidden)
            node.excluded_llm_metadata_keys = list(self.hidden)
            node.id_ = f"{key}-{len(kept):05d}"
            node.relationships = {}
            kept.append(node)
        return kept

    def bounded(self, node: BaseNode) -> list[BaseNode]:
        """The node itself when its text is of a size the splitter handles well, otherwise
        documents of at most PART_CHARS characters with long runs broken (same metadata)."""
        text = node.get_content(metadata_mode=MetadataMode.NONE)
        if len(text) <= MAX_WORD_CHARS or (len(text) <= PART_CHARS and not LONG_WORD.search(text)):
            return [node]
        text = LONG_WORD.sub(break_word, text)
        return [
            Document(
                text=part,
                metadata=dict(node.metadata),
                excluded_embed_metadata_keys=list(self.hidden),
                excluded_llm_metadata_keys=list(self.hidden),
            )
            for part in text_parts(text, PART_CHARS)
        ]


def break_word(match: re.Match) -> str:
    word = match.group()
    return " ".join(word[i : i + MAX_WORD_CHARS] for i in range(0, len(word), MAX_WORD_CHARS))


def text_parts(text: str, limit: int) -> list[str]:
    """Text in parts of at most `limit` characters, cut at a line break or else a space."""
    parts = []
    start = 0
    while len(text) - start > limit:
        end = start + limit
        cut = text.rfind("\n", start + limit // 2, end)
        if cut < 0:
            cut = text.rfind(" ", start + limit // 2, end)
        cut = end if cut < 0 else cut + 1
        parts.append(text[start:cut])
        start = cut
    parts.append(text[start:])
    return [part for part in parts if part.strip()]


def section_heading(header_path: str, text: str) -> str:
    """Parent headings plus the section's own heading: 'Guide > Install > Disk space'."""
    parts = [p.strip() for p in header_path.split(HEADING_SEP) if p.strip()]
    match = re.match(r"#{1,6}\s+(.+)", text.lstrip())
    if match:
        parts.append(match.group(1).strip())
    return " > ".join(parts)[:300]
