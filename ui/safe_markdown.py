"""Markdown from the model or from documents, rewritten so the browser loads and links nothing.

Streamlit renders GitHub-flavoured markdown: an image makes the reader's browser fetch its URL,
and links, `<http://…>` autolinks and bare URLs (`http://…`, `www.…`, `a@b.c`) become clickable.
The model's answer and every document-derived string (file names, headings) are untrusted, so
they are parsed here and written out again from a short list of harmless constructs: emphasis,
strikethrough, code, headings, lists, quotes, tables and rules. All other text is escaped, so
raw HTML, entities and Streamlit's own `:directive[…]`, `:emoji:` and `$math$` stay literal.
Links and images become their text followed by the full URL in a code span, which shows the
address and is never clickable (GitHub's bare-URL linker skips code). Parsing is markdown-it's,
a CommonMark parser, so the structure read here is the structure Streamlit would have drawn.
"""

from __future__ import annotations

import re
from functools import lru_cache

from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode

# ASCII punctuation that can start or end markdown syntax anywhere in a line (CommonMark lets any
# of it be backslash-escaped, and the escape renders as the character itself). Not listed:
# ! ( ) ' " , ; ? % /, which only mean something next to a `[` (escaped), and - + = . ) which
# only matter at the start of a line (LINE_START).
SYNTAX_CHARS = frozenset("#$&*:<>@[\\]^_`{|}~")
# A list item, setext underline or rule at the start of a line: `- `, `+`, `=`, `1.`, `2)`.
LINE_START = re.compile(r"(^|\n)([ \t]*)([-+=]|\d{1,9}[.)])")

# What every address GitHub's bare-URL linker (remark-gfm in Streamlit) links must contain:
# `://`, `www.` or `@domain.x`. Broader than the linker on purpose; the whole word around a hit
# is taken as the address.
ADDRESS = re.compile(r"://|www\.|@[\w\-]+\.[\w\-]", re.IGNORECASE)
# Punctuation trimmed off either end of an address, like the linker does ("(see http://x).").
LEADING = "([{<\"'*_~"
TRAILING = ".,:;!?)]}>\"'*_~"


@lru_cache(maxsize=1)
def parser() -> MarkdownIt:
    """CommonMark plus GitHub tables and strikethrough; raw HTML is read as plain text."""
    return MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])


def safe_markdown(text: str) -> str:
    """Markdown that shows `text`'s formatting and words but loads, links and embeds nothing."""
    tree = SyntaxTreeNode(parser().parse(text))
    return "\n".join(join_blocks(tree.children, tight=False))


def escape_text(text: str) -> str:
    """Plain text (a file name, a heading, an error) as markdown that shows exactly that text."""
    return inline_markdown([("text", text)])


# Block structure ---------------------------------------------------------------------------


def block_lines(node: SyntaxTreeNode) -> list[str]:
    """One block as lines of markdown (containers indent or prefix their children's lines)."""
    kind = node.type
    if kind == "paragraph":
        return inline_lines(node)
    if kind == "heading":
        level = int(node.tag[1]) if node.tag[1:].isdigit() else 1
        return ["#" * level + " " + " ".join(inline_lines(node))]
    if kind in ("bullet_list", "ordered_list"):
        return list_lines(node)
    if kind == "blockquote":
        inner = join_blocks(node.children, tight=False)
        return ["> " + line if line else ">" for line in inner]
    if kind == "hr":
        return ["* * *"]  # never read as a setext underline
    if kind in ("fence", "code_block"):
        return code_block_lines(node.content, node.info if kind == "fence" else "")
    if kind == "table":
        return table_lines(node)
    # Anything else (html_block when HTML parsing is on, future extensions): its text, inert.
    return [escape_text(line) for line in (node.content or "").splitlines()]


def join_blocks(nodes: list[SyntaxTreeNode], tight: bool) -> list[str]:
    lines: list[str] = []
    for node in nodes:
        block = block_lines(node)
        if not block:
            continue
        if lines and not tight:
            lines.append("")
        lines.extend(block)
    return lines


def list_lines(node: SyntaxTreeNode) -> list[str]:
    ordered = node.type == "ordered_list"
    start = int(node.attrs.get("start", 1)) if ordered else 1
    tight = all(p.hidden for item in node.children for p in item.children if p.type == "paragraph")
    lines: list[str] = []
    for offset, item in enumerate(node.children):
        marker = f"{start + offset}. " if ordered else "- "
        body = join_blocks(item.children, tight=tight) or [""]
        if lines and not tight:
            lines.append("")
        lines.append((marker + body[0]).rstrip())
        lines.extend((" " * len(marker) + line) if line else "" for line in body[1:])
    return lines


def code_block_lines(content: str, info: str) -> list[str]:
    fence = "`" * max(3, longest_run(content, "`") + 1)
    language = re.sub(r"[^\w+\-]", "", info.split(" ")[0]) if info else ""
    return [fence + language, *content.rstrip("\n").split("\n"), fence]


def table_lines(node: SyntaxTreeNode) -> list[str]:
    rows = [row for section in node.children for row in section.children]
    if not rows:
        return []
    rendered = [
        [" ".join(inline_lines(cell, in_table=True)) for cell in row.children] for row in rows
    ]
    aligns = []
    for cell in rows[0].children:
        style = str(cell.attrs.get("style", ""))
        aligns.append(
            {"text-align:left": ":--", "text-align:right": "--:", "text-align:center": ":-:"}.get(
                style, "---"
            )
        )
    lines = ["| " + " | ".join(rendered[0]) + " |", "| " + " | ".join(aligns) + " |"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rendered[1:]]
    return lines


# Inline content ----------------------------------------------------------------------------

# An inline run is a list of (kind, value): "text" is shown literally, "code" is a code span,
# "mark" is markdown we emit ourselves (emphasis delimiters, a hard line break).
Piece = tuple[str, str]


def inline_lines(node: SyntaxTreeNode, in_table: bool = False) -> list[str]:
    pieces: list[Piece] = []
    for child in node.children:  # the block's single `inline` node
        pieces.extend(inline_pieces(child))
    text = inline_markdown(pieces, in_table=in_table)
    return text.split("\n") if not in_table else [text.replace("\n", " ")]


def inline_pieces(node: SyntaxTreeNode) -> list[Piece]:
    kind = node.type
    if kind == "inline":
        return [p for child in node.children for p in inline_pieces(child)]
    if kind == "text":
        return [("text", node.content)]
    if kind == "softbreak":
        return [("text", "\n")]
    if kind == "hardbreak":
        return [("mark", "\\\n")]
    if kind == "code_inline":
        return [("code", node.content)]
    if kind in ("em", "strong", "s"):
        delimiter = {"em": "*", "strong": "**", "s": "~~"}[kind]
        inner = [p for child in node.children for p in inline_pieces(child)]
        return [("mark", delimiter), *inner, ("mark", delimiter)]
    if kind == "link":
        href = str(node.attrs.get("href", ""))
        inner = [p for child in node.children for p in inline_pieces(child)]
        shown = plain(inner)
        if node.markup in ("autolink", "linkify") or href in (shown, "mailto:" + shown):
            return [("code", shown)]  # the text is the address already
        return [*inner, ("text", " ("), ("code", href), ("text", ")")]
    if kind == "image":
        alt = [p for child in node.children for p in inline_pieces(child)]
        label = [("text", "[image: "), *alt, ("text", "]")] if alt else [("text", "[image]")]
        return [*label, ("text", " ("), ("code", str(node.attrs.get("src", ""))), ("text", ")")]
    # html_inline (only with HTML parsing on) or anything new: its source, shown as text.
    return [("text", node.content)]


def plain(pieces: list[Piece]) -> str:
    return "".join(value for kind, value in pieces if kind != "mark")


def inline_markdown(pieces: list[Piece], in_table: bool = False) -> str:
    """Join pieces into markdown: text escaped (addresses in it made code), code fenced."""
    out: list[tuple[bool, str]] = []
    text = ""
    for kind, value in [*pieces, ("mark", "")]:
        if kind == "text":
            text += value  # adjacent text is one text node for the bare-URL linker
            continue
        if text:
            out.extend(text_markdown(text, in_table))
            text = ""
        out.append((True, code_span(value, in_table)) if kind == "code" else (False, value))
    return join_spans(out)


def join_spans(parts: list[tuple[bool, str]]) -> str:
    """Concatenate (is_code, markdown) parts, with a space between two code spans that would
    touch: two fences side by side read as one longer fence and end the spans elsewhere."""
    joined = ""
    after_code = False
    for is_code, part in parts:
        if not part:
            continue
        if is_code and after_code:
            joined += " "
        joined += part
        after_code = is_code
    return joined


def text_markdown(text: str, in_table: bool) -> list[tuple[bool, str]]:
    """Escape text; any address in it goes into a code span so that nothing links it."""
    out: list[tuple[bool, str]] = []
    position = 0
    for start, end in address_spans(text):
        out.append((False, escape(text[position:start])))
        out.append((True, code_span(text[start:end], in_table)))
        position = end
    out.append((False, escape(text[position:])))
    return out


def address_spans(text: str) -> list[tuple[int, int]]:
    """Start and end of every address: from its scheme (or `www`, or mailbox) up to a space or a
    quote or angle bracket, less trailing punctuation. Text left between addresses holds none of
    `://`, `www.` or `@x.y`, so the linker finds nothing in it."""
    spans: list[tuple[int, int]] = []
    for match in ADDRESS.finditer(text):
        if spans and match.start() < spans[-1][1]:
            continue
        start, end = match.start(), match.end()
        while start > 0 and (text[start - 1].isalnum() or text[start - 1] in "_+.-"):
            start -= 1  # back over the scheme, `www` or the mailbox name
        while end < len(text) and not text[end].isspace() and text[end] not in "\"'<>`":
            end += 1
        while start < match.start() and text[start] in LEADING:
            start += 1
        while end > match.end() and text[end - 1] in TRAILING:
            if text[end - 1] == ")" and text.count("(", start, end) >= text.count(")", start, end):
                break  # a balanced parenthesis belongs to the address: …/Tree_(data)
            end -= 1
        spans.append((start, end))
    return spans


def escape(text: str) -> str:
    """Backslash-escape syntax; `text` is taken to start a line (needless escapes are harmless)."""
    text = "".join("\\" + c if c in SYNTAX_CHARS else c for c in text)
    return LINE_START.sub(lambda m: m[1] + m[2] + m[3][:-1] + "\\" + m[3][-1], text)


def code_span(content: str, in_table: bool = False) -> str:
    """`content` as one code span whatever backticks it holds; pipes escaped inside tables."""
    content = content.replace("\n", " ")
    if in_table:
        content = content.replace("|", "\\|")
    if not content:
        return ""
    fence = "`" * (longest_run(content, "`") + 1)
    pad = " " if content[0] in "` " or content[-1] in "` " else ""
    return f"{fence}{pad}{content}{pad}{fence}"


def longest_run(text: str, char: str) -> int:
    runs = re.findall(f"{re.escape(char)}+", text)
    return max((len(r) for r in runs), default=0)
