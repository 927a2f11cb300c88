"""The `rag` command: a thin layer over the App's engine (ask, chat, eval, model, status, ui,
serve, keys)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rag.answer import Answer
from rag.app import App
from rag.cli_serve import add_serve_commands
from rag.cli_support import (
    EXIT_STATUS_HELP,
    HelpFormatter,
    add_collection_option,
    collection_name,
    manifest_errors,
    on_app,
    run_command,
)
from rag.errors import ExitStatus, UserError

SEARCH_COLLECTION_HELP = "collection to search (default: RAG_COLLECTION or 'default')"


def add_search_options(parser: argparse.ArgumentParser) -> None:
    """--collection, --top-k and --where, shared by the commands that search."""
    add_collection_option(parser, SEARCH_COLLECTION_HELP)
    add_top_k_option(parser)
    parser.add_argument(
        "--where",
        help="only files whose path matches a glob, e.g. 'path:*.pdf' or 'path:*/contracts/*'",
    )


def add_top_k_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--top-k", "-k", type=int, help="passages to retrieve (default: RAG_TOP_K, 5)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rag",
        formatter_class=HelpFormatter,
        description=(
            "Ask questions about your own documents, answered by a local model with citations. "
            "Nothing leaves this machine. Add documents with the `ingest` command first."
        ),
        epilog=(
            "Run `rag COMMAND --help` for a command's options. Settings: RAG_* variables "
            f"(README).\n\n{EXIT_STATUS_HELP}"
        ),
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    ask = sub.add_parser(
        "ask",
        formatter_class=HelpFormatter,
        help="answer one question, citing sources as [1], [2]",
        description=(
            "Retrieve the passages closest to QUESTION, answer from them with the local model "
            "(streamed as it is written), and list the sources with file and page."
        ),
    )
    ask.add_argument("question", metavar="QUESTION", help="the question, in quotes")
    ask.epilog = EXIT_STATUS_HELP
    add_search_options(ask)
    ask.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object: answer, sources (best first), refused, timings",
    )
    ask.set_defaults(handler=run_ask)

    chat = sub.add_parser(
        "chat",
        formatter_class=HelpFormatter,
        help="a conversation in the terminal; follow-up questions keep their context",
        description=(
            "Ask questions one after another; a follow-up such as 'and its default value?' is "
            "searched together with the previous question. On a terminal an empty line or Ctrl+D "
            "ends. With --json, questions are read one per line from stdin (empty lines are "
            "skipped) and each answer is printed as one JSON object per line, shaped like "
            "`rag ask --json`; a question that cannot be answered (e.g. an empty collection or a "
            'question too long) prints {"question": ..., "error": ...} instead, the conversation '
            "goes on without it, and the exit status is then 2."
        ),
        epilog=EXIT_STATUS_HELP,
    )
    add_search_options(chat)
    chat.add_argument(
        "--json",
        action="store_true",
        help="read questions from stdin, print one JSON object per answer (for scripts)",
    )
    chat.set_defaults(handler=run_chat)

    evaluate = sub.add_parser(
        "eval",
        help="measure retrieval, answers and refusals on a file of questions",
        description=(
            "Run every question of a JSONL file (id, question, answer_keywords, source_file, page, "
            "language, kind) and report hit@1/3/5, MRR@10, page hits, keyword and citation "
            "accuracy, refusal rates and latency, overall, per language and per kind."
        ),
    )
    evaluate.add_argument("questions", type=Path, metavar="QUESTIONS.jsonl")
    add_collection_option(evaluate, SEARCH_COLLECTION_HELP)
    add_top_k_option(evaluate)
    evaluate.add_argument("--k", dest="top_k", type=int, help=argparse.SUPPRESS)  # older spelling
    evaluate.add_argument(
        "--no-generate",
        action="store_true",
        help="score retrieval and the refusal decision only (fast, no LLM)",
    )
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.set_defaults(handler=run_eval)

    model = sub.add_parser(
        "model",
        help="show the language model (info) or download Llama 3.1 8B (pull)",
        description="info: load the configured GGUF model and show its architecture, trained "
        "context length, quantization, the context and threads in use, and where its chat "
        "template comes from. pull: download a Llama 3.1 8B Instruct GGUF (Q4_K_M) into "
        "RAG_HOME/models with huggingface_hub when this machine is online, verify its size, "
        "SHA-256 and format, and print the setting to use. Nothing else ever goes online.",
    )
    model.add_argument(
        "action",
        choices=["info", "pull"],
        help="info: describe the model; pull: download Llama 3.1 8B Instruct Q4_K_M (online only)",
    )
    model.add_argument("--repo", help="Hugging Face repository for pull (a Llama 3.1 GGUF repo)")
    model.add_argument("--file", help="GGUF file name in that repository")
    model.add_argument("--json", action="store_true", help="print one JSON object")
    model.set_defaults(handler=run_model)

    status = sub.add_parser(
        "status",
        help="show collections, document and chunk counts, and the models in use",
        description="Show where state lives, the models configured, and what each collection holds.",
    )
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.set_defaults(handler=run_status)

    ui = sub.add_parser(
        "ui",
        help="serve the browser page (Streamlit) on 127.0.0.1:8501",
        description=(
            "Start the Streamlit page: a chat that streams answers with sources, and a sidebar "
            "to upload documents. Bound to 127.0.0.1 unless --host says otherwise. On any other "
            "address the page is reachable from the network, so it asks for a password first "
            "(on loopback it asks for none); set the password with --password-file. There is "
            "no default password: without a stored one, `rag ui` refuses to listen off loopback. "
            "The server makes no network calls of its own."
        ),
    )
    ui.add_argument("--host", help="address to bind (default: RAG_UI_HOST=127.0.0.1)")
    ui.add_argument(
        "--password-file",
        type=Path,
        metavar="FILE",
        help="set the page's password from the first line of FILE; only a salted hash is kept "
        "(RAG_HOME/ui-password.json) and later runs reuse it; a new FILE replaces it",
    )
    ui.add_argument("--port", type=int, help="port (default: RAG_UI_PORT=8501)")
    ui.add_argument(
        "--collection", "-c", type=collection_name, help="collection selected when the page opens"
    )
    ui.set_defaults(handler=run_ui)
    add_serve_commands(sub)
    return parser


def main(argv: list[str] | None = None, app: App | None = None) -> int:
    """Run one `rag` command on `app` (built from the RAG_* settings when None)."""
    args = build_parser().parse_args(argv)
    return run_command(
        f"rag {args.command}", lambda: on_app(app, lambda built: handle(args, built))
    )


def handle(args: argparse.Namespace, app: App) -> int:
    if args.command in ("ask", "chat", "eval"):  # commands that read one collection's manifest
        with manifest_errors(app.settings, args.collection):
            return args.handler(args, app)
    return args.handler(args, app)


def search_options(args: argparse.Namespace) -> dict:
    """The per-command options every search takes."""
    return {"collection": args.collection, "top_k": args.top_k, "where": args.where}


def run_ask(args: argparse.Namespace, app: App) -> int:
    stream = app.engine.stream(args.question, **search_options(args))
    with stream:
        if args.json:
            stream.text()
            assert stream.answer is not None
            print(json.dumps(stream.answer.to_json(), ensure_ascii=False))
            return 0
        for piece in stream:
            sys.stdout.write(piece)
            sys.stdout.flush()
    assert stream.answer is not None
    print()
    print_sources(stream.answer)
    return 0


def print_sources(answer: Answer) -> None:
    if answer.refused and answer.refusal_reason:
        print(f"(not answered: {answer.refusal_reason})")
    print("\nSources:")
    for number, source in enumerate(answer.sources, start=1):
        mark = "*" if number in answer.cited else " "
        page = f", page {source.page}" if source.page else ""
        print(f" {mark}[{number}] {source.file}{page}  (score {source.score:.2f})")
    timings = answer.timings
    print(
        f"\nretrieval {timings.get('retrieve_s', 0):.2f}s, "
        f"generation {timings.get('generate_s', 0):.2f}s, {answer.chunks_used} passages used"
    )


def run_chat(args: argparse.Namespace, app: App) -> int:
    if args.json:
        return chat_json(args, app)
    history: list[str] = []
    interactive = sys.stdin.isatty()
    while True:
        try:
            question = input("you> " if interactive else "")
        except EOFError:
            break
        if not question.strip():
            if interactive:
                break
            continue
        stream = app.engine.stream(question, history=history, **search_options(args))
        print("rag> ", end="", flush=True)
        with stream:
            for piece in stream:
                sys.stdout.write(piece)
                sys.stdout.flush()
        print()
        assert stream.answer is not None
        print_sources(stream.answer)
        print()
        history.append(question)
    return 0


def chat_json(args: argparse.Namespace, app: App) -> int:
    """One question per stdin line, one JSON object per answer on stdout, in order."""
    history: list[str] = []
    status = ExitStatus.OK
    while line := sys.stdin.readline():
        question = line.strip()
        if not question:
            continue
        try:
            with app.engine.stream(question, history=history, **search_options(args)) as stream:
                stream.text()
        except UserError as exc:
            status = ExitStatus.USER_ERROR
            print(json.dumps({"question": question, "error": str(exc)}, ensure_ascii=False))
            sys.stdout.flush()
            continue
        assert stream.answer is not None
        print(json.dumps(stream.answer.to_json(), ensure_ascii=False), flush=True)
        history.append(question)
    return status


def run_eval(args: argparse.Namespace, app: App) -> int:
    from rag import evaluate

    questions = evaluate.load_questions(args.questions)
    top_k = args.top_k if args.top_k is not None else app.settings.top_k
    show = not args.json and sys.stderr.isatty()
    progress = (
        (lambda n: print(f"\r{n}/{len(questions)} questions", end="", file=sys.stderr))
        if show
        else None
    )
    outcomes = evaluate.run(
        app.engine, questions, args.collection, top_k, not args.no_generate, progress
    )
    if show:
        print(file=sys.stderr)
    result = evaluate.report(outcomes)
    print(json.dumps(result, ensure_ascii=False) if args.json else evaluate.format_table(result))
    return 0


def run_model(args: argparse.Namespace, app: App) -> int:
    settings = app.settings
    if args.action == "pull":
        from rag import model_pull

        pulled = model_pull.pull(
            settings, args.repo or model_pull.DEFAULT_REPO, args.file or model_pull.DEFAULT_FILE
        )
        if args.json:
            print(
                json.dumps({"file": str(pulled.path), "size": pulled.size, "sha256": pulled.sha256})
            )
        else:
            print(f"downloaded and verified {pulled.path} ({pulled.size / 1e9:.2f} GB)")
            print(f"use it with:\n  {pulled.setting()}")
        return 0
    info = app.models.llm.describe()
    if args.json:
        print(json.dumps(info))
    else:
        for key, value in info.items():
            print(f"{key:24} {value}")
    return 0


def run_status(args: argparse.Namespace, app: App) -> int:
    settings, engine = app.settings, app.engine
    collections = [engine.stats(name) for name in engine.collections()]
    backends = {c["collection"]: engine.embed_backend(c["collection"]) for c in collections}
    data = {
        "home": str(settings.home),
        "store": settings.chroma_server or str(settings.chroma_path),
        "embed_model": settings.embed_model,
        "embed_backend": app.models.embed_backend,
        "llm_model": settings.llm_model,
        "collections": collections,
        "collection_backends": backends,  # what embedded each collection's vectors
    }
    if args.json:
        print(json.dumps(data))
        return 0
    for key in ("home", "store", "embed_model", "embed_backend", "llm_model"):
        print(f"{key:13} {data[key]}")
    if not collections:
        print("no collections yet; add documents with `ingest PATH`")
    for item in collections:
        backend = backends[item["collection"]]
        embedded = f", embedded with {backend}" if backend else ""
        print(
            f"collection '{item['collection']}': {item['files']} documents, "
            f"{item['chunks']} chunks{embedded}"
        )
    return 0


def run_ui(args: argparse.Namespace, app: App) -> int:
    from rag.ui_launch import launch_ui

    settings = app.settings
    if args.collection:
        settings = settings.model_copy(update={"collection": args.collection})
    return launch_ui(settings, host=args.host, port=args.port, password_file=args.password_file)
