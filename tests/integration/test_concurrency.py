"""Five sessions of the page asking at once share one model and all get whole answers."""

import re
import threading

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT

pytestmark = pytest.mark.integration

QUESTIONS = [
    "How many days of paid annual leave do full-time employees get?",
    "What does error code E-214 mean?",
    "When was firmware 3.2.0 released?",
    "How long does the K2 take to charge?",
    "When does the Nordvik Logistics pilot go live?",
]
EXPECTED = [
    "employee-handbook.pdf",
    "support-faq.html",
    "release-notes.md",
    "k2-robot-specs.docx",
    "meeting-notes-2026-03.txt",
]


@pytest.mark.store_independent  # five sessions sharing one model
def test_five_simultaneous_sessions_all_get_answers(sample_home, monkeypatch):
    monkeypatch.setenv("RAG_HOME", str(sample_home))
    warm = AppTest.from_file(str(ROOT / "ui" / "app.py"), default_timeout=600)
    warm.run()  # load the shared models once, as a running server would have
    apps = [AppTest.from_file(str(ROOT / "ui" / "app.py"), default_timeout=600) for _ in QUESTIONS]
    for app in apps:
        app.run()
    errors: list[BaseException] = []

    def ask(app, question):
        try:
            app.chat_input[0].set_value(question).run()
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [
        threading.Thread(target=ask, args=pair) for pair in zip(apps, QUESTIONS, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=900)
    assert not errors, errors
    for app, expected in zip(apps, EXPECTED, strict=True):
        assert not app.exception
        answer = [m for m in app.chat_message if m.name == "assistant"][-1]
        texts = [re.sub(r"\\(.)", r"\1", md.value) for md in answer.markdown]  # unescaped
        assert texts[0].strip(), "empty answer"
        assert "<|im_end|>" not in texts[0] and "<|im_start|>" not in texts[0]
        cards = sorted(  # the source cards, by number: "badge n **file · page**"
            (int(m.group(1)), t) for t in texts if (m := re.match(r":blue-badge\[(\d+)\] \*\*", t))
        )
        sources = [t for _, t in cards]
        assert any(expected in t for t in sources[:3]), (expected, sources)  # its own sources
