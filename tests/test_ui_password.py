"""The page's password: only a salted hash is stored, `rag ui` refuses to listen off loopback
without one, and the page asks for it before drawing anything else, slowing down guessers."""

from __future__ import annotations

import json
import os
import stat

import pytest
from streamlit.proto.TextInput_pb2 import TextInput
from streamlit.testing.v1 import AppTest

import rag.cli
from rag.app import build_app
from rag.settings import load_settings
from rag.ui_password import (
    FIRST_WAIT_S,
    FORGET_S,
    FREE_TRIES,
    MAX_WAIT_S,
    PASSWORD_FILE_ENV,
    REQUIRE_PASSWORD_ENV,
    SignInThrottle,
    UiPasswordError,
    has_password,
    password_path,
    read_password_file,
    store_password,
    verify_password,
)
from tests.conftest import NO_REFUSAL, FakeLLM

SECRET = "correct horse battery staple"


def test_only_a_salted_hash_is_stored_owner_only(rag_home):
    path = store_password(rag_home, SECRET)
    assert path == password_path(rag_home) and has_password(rag_home)
    text = path.read_text()
    assert SECRET not in text and SECRET.encode().hex() not in text
    record = json.loads(text)
    assert record["algorithm"] == "scrypt" and len(bytes.fromhex(record["salt"])) == 16
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert verify_password(path, SECRET)
    assert not verify_password(path, SECRET.upper())
    assert not verify_password(path, "")


def test_the_salt_is_random_and_a_new_password_replaces_the_old(rag_home):
    first = json.loads(store_password(rag_home, SECRET).read_text())
    second = json.loads(store_password(rag_home, SECRET).read_text())
    assert first["salt"] != second["salt"] and first["hash"] != second["hash"]
    path = store_password(rag_home, "another one")
    assert verify_password(path, "another one") and not verify_password(path, SECRET)
    assert [p.name for p in rag_home.iterdir()] == ["ui-password.json"]  # no temporary left


def test_password_file_first_line_stripped_and_empty_refused(tmp_path):
    given = tmp_path / "pw.txt"
    given.write_text(f"  {SECRET} \nsecond line\n")
    assert read_password_file(given) == SECRET
    given.write_text("   \nhidden on line two\n")
    with pytest.raises(UiPasswordError, match=f"password file {given} is empty"):
        read_password_file(given)
    with pytest.raises(UiPasswordError, match="cannot be read"):
        read_password_file(tmp_path / "missing.txt")


def test_a_missing_or_damaged_store_never_accepts(rag_home):
    path = password_path(rag_home)
    with pytest.raises(UiPasswordError, match="rag ui --password-file FILE"):
        verify_password(path, SECRET)
    path.write_text('{"algorithm": "scrypt", "salt": "zz"}')
    with pytest.raises(UiPasswordError, match="cannot be used"):
        verify_password(path, SECRET)


# --- `rag ui`: what it does before handing over to Streamlit -----------------------------------


@pytest.fixture
def launches(monkeypatch):
    """Each exec of the Streamlit server, recorded instead of done: (argv, environment)."""
    started = []
    monkeypatch.setattr(os, "execve", lambda path, argv, env: started.append((argv, env)))
    return started


@pytest.fixture
def ui_app(rag_home, fake_embedder):
    app = build_app(load_settings(), embedder=fake_embedder, llm=FakeLLM())
    yield app
    app.close()


def test_off_loopback_without_a_password_it_refuses_to_start(ui_app, launches, capsys):
    status = rag.cli.main(["ui", "--host", "0.0.0.0"], app=ui_app)
    err = capsys.readouterr().err
    assert status == 2 and launches == []
    assert err.count("\n") == 1 and "set one with `rag ui --password-file FILE`" in err, err


def test_an_empty_password_file_is_refused_and_nothing_starts(ui_app, launches, tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    status = rag.cli.main(["ui", "--host", "0.0.0.0", "--password-file", str(empty)], app=ui_app)
    err = capsys.readouterr().err
    assert status == 2 and launches == [] and not has_password(ui_app.settings.home)
    assert err.count("\n") == 1 and str(empty) in err, err


def test_password_file_is_stored_and_reused_off_loopback(ui_app, launches, tmp_path, capsys):
    given = tmp_path / "pw.txt"
    given.write_text(SECRET + "\n")
    assert rag.cli.main(["ui", "--host", "0.0.0.0", "--password-file", str(given)], app=ui_app) == 0
    given.unlink()
    assert rag.cli.main(["ui", "--host", "192.168.1.20"], app=ui_app) == 0  # the stored hash
    assert len(launches) == 2
    stored = password_path(ui_app.settings.home)
    for argv, env in launches:
        assert env[REQUIRE_PASSWORD_ENV] == "1" and env[PASSWORD_FILE_ENV] == str(stored)
        assert SECRET not in " ".join(argv) and SECRET not in str(env)
    assert verify_password(stored, SECRET)
    assert "reachable from the network" in capsys.readouterr().err


def test_on_loopback_no_password_is_needed_or_asked(ui_app, launches, monkeypatch):
    monkeypatch.setenv(REQUIRE_PASSWORD_ENV, "1")  # not inherited from the shell either
    assert rag.cli.main(["ui"], app=ui_app) == 0
    store_password(ui_app.settings.home, SECRET)
    assert rag.cli.main(["ui", "--host", "localhost"], app=ui_app) == 0
    assert [REQUIRE_PASSWORD_ENV in env for _, env in launches] == [False, False]


def test_wrong_passwords_from_one_address_make_it_wait_longer_and_longer():
    now = [1000.0]
    throttle = SignInThrottle(clock=lambda: now[0])
    for _ in range(FREE_TRIES - 1):
        throttle.failed("10.0.0.7")
        assert throttle.wait_s("10.0.0.7") == 0  # a person mistyping is not slowed
    throttle.failed("10.0.0.7")
    assert throttle.wait_s("10.0.0.7") == FIRST_WAIT_S and throttle.wait_s("10.0.0.8") == 0
    now[0] += FIRST_WAIT_S
    assert throttle.wait_s("10.0.0.7") == 0
    throttle.failed("10.0.0.7")
    assert throttle.wait_s("10.0.0.7") == 2 * FIRST_WAIT_S  # doubled
    for _ in range(20):
        throttle.failed("10.0.0.7")
    assert throttle.wait_s("10.0.0.7") == MAX_WAIT_S  # capped
    now[0] += FORGET_S + 1
    assert throttle.wait_s("10.0.0.7") == 0
    throttle.failed("10.0.0.7")
    assert throttle.wait_s("10.0.0.7") == 0  # an hour later the count starts again

    for _ in range(FREE_TRIES):
        throttle.failed("10.0.0.9")
    throttle.succeeded("10.0.0.9")
    assert throttle.wait_s("10.0.0.9") == 0


# --- the page ------------------------------------------------------------------------------------


def draw(app) -> None:
    from ui.page import main

    main(app)


@pytest.fixture
def locked_page(rag_home, monkeypatch, fake_embedder):
    app = build_app(load_settings(**NO_REFUSAL), embedder=fake_embedder, llm=FakeLLM())
    monkeypatch.setenv(REQUIRE_PASSWORD_ENV, "1")
    monkeypatch.setenv(PASSWORD_FILE_ENV, str(store_password(rag_home, SECRET)))
    test = AppTest.from_function(draw, kwargs={"app": app}, default_timeout=60)
    yield test.run()
    app.close()


def ask_page_drawn(page: AppTest) -> bool:
    """The Ask page (of an empty collection: its uploader) and the sidebar are on screen."""
    titles = [t.value for t in page.title]
    uploaders = [w.key for w in page.get("file_uploader")]
    return (
        titles == ["Ask your documents"]
        and "ask-upload" in uploaders
        and len(page.sidebar.selectbox) == 1
    )


def sign_in(page: AppTest, password: str) -> AppTest:
    page.text_input[0].set_value(password)
    return page.button[0].click().run()


def test_the_page_asks_for_the_password_first_and_shows_nothing_else(locked_page):
    page = locked_page
    assert not page.exception, page.exception
    assert [t.label for t in page.text_input] == ["Password"]
    assert page.text_input[0].proto.type == TextInput.PASSWORD
    assert [t.value for t in page.title] == ["Sign in"] and len(page.error) == 0
    assert not ask_page_drawn(page) and len(page.sidebar.selectbox) == 0

    sign_in(page, "guess")
    assert [e.value for e in page.error] == ["Wrong password."]
    assert not ask_page_drawn(page) and len(page.sidebar.selectbox) == 0

    sign_in(page, SECRET)
    assert not page.exception, page.exception
    assert len(page.error) == 0 and ask_page_drawn(page)
    assert "Password" not in [t.label for t in page.text_input]
    page.run()  # the session stays signed in
    assert ask_page_drawn(page)


def test_the_page_stops_checking_passwords_after_repeated_wrong_ones(locked_page):
    page = locked_page
    for _ in range(FREE_TRIES):
        sign_in(page, "guess")
        assert [e.value for e in page.error] == ["Wrong password."]
    sign_in(page, SECRET)  # even the right one waits now: a guesser learns nothing
    assert [e.value for e in page.error] == [
        f"Too many wrong passwords; try again in {FIRST_WAIT_S:.0f} s."
    ]
    assert not ask_page_drawn(page)


def test_the_page_refuses_everyone_when_no_password_is_stored(locked_page, rag_home):
    password_path(rag_home).unlink()
    page = sign_in(locked_page, SECRET)
    assert not ask_page_drawn(page) and "rag ui --password-file FILE" in page.error[0].value


def test_without_the_requirement_the_page_opens_directly(rag_home, fake_embedder):
    app = build_app(load_settings(**NO_REFUSAL), embedder=fake_embedder, llm=FakeLLM())
    page = AppTest.from_function(draw, kwargs={"app": app}, default_timeout=60).run()
    assert not page.exception and ask_page_drawn(page)
    app.close()
