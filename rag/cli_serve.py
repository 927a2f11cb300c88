"""`rag serve` (the HTTP API) and `rag keys` (its API keys)."""

from __future__ import annotations

import argparse
import json

from rag.app import App
from rag.errors import UserError
from rag.keys import KeyStore
from rag.ui_launch import is_loopback


def add_serve_commands(sub) -> None:
    serve = sub.add_parser(
        "serve",
        help="serve the HTTP API (JSON, SSE and an OpenAI-compatible route) on 127.0.0.1:8000",
        description=(
            "Serve the HTTP API over the same collections and models as the CLI and the page: "
            "upload, list and delete documents, search, ask (JSON or server-sent events) and "
            "POST /v1/chat/completions for OpenAI clients (`model` names the collection). "
            "With API keys (`rag keys create`) every request needs `Authorization: Bearer KEY` "
            "and sees only its key's collections. Without keys it serves anyone, so it then "
            "refuses to bind any address but loopback."
        ),
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument(
        "--max-queue",
        type=int,
        default=8,
        help="answers waiting for the model before new ones get 503 with Retry-After (default 8)",
    )
    serve.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds an answer may take before it is stopped (504, or finish reason "
        '"length" when streaming; default 300)',
    )
    serve.add_argument("--openapi", action="store_true", help="print the OpenAPI document and exit")
    serve.set_defaults(handler=run_serve)

    keys = sub.add_parser(
        "keys",
        help="create, list and revoke API keys for `rag serve`",
        description=(
            "API keys for `rag serve`. A key opens the collections it was created for (read-only "
            "with --read-only) and nothing else. Keys are stored hashed in RAG_HOME/api-keys.json; "
            "a new key is printed once."
        ),
    )
    actions = keys.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="make a key for one or more collections")
    create.add_argument(
        "--collection", "-c", action="append", required=True, help="a collection (repeatable)"
    )
    create.add_argument("--read-only", action="store_true", help="search and ask only")
    create.add_argument("--json", action="store_true", help='print {"id", "key", "collections"}')
    listing = actions.add_parser("list", help="show the keys (never the keys themselves)")
    listing.add_argument("--json", action="store_true", help="print a JSON list")
    revoke = actions.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("id", help="the key's id, as `rag keys list` shows it")
    keys.set_defaults(handler=run_keys)


def run_keys(args: argparse.Namespace, app: App) -> int:
    store = KeyStore(app.settings.home)
    if args.action == "create":
        key, text = store.create(args.collection, args.read_only)
        if args.json:
            print(json.dumps({"id": key.id, "key": text, "collections": key.collections}))
        else:
            mode = " (read-only)" if key.read_only else ""
            print(f"key {key.id} for {', '.join(key.collections)}{mode}:\n{text}")
            print("It is shown only now; keep it somewhere safe.")
        return 0
    if args.action == "list":
        items = [k.public() for k in store.load()]
        if args.json:
            print(json.dumps(items))
            return 0
        for item in items:
            mode = " read-only" if item["read_only"] else ""
            print(f"{item['id']}  {','.join(item['collections'])}{mode}  created {item['created']}")
        return 0
    revoked = store.revoke(args.id)
    print(f"revoked key {revoked.id} ({', '.join(revoked.collections)})")
    return 0


def run_serve(args: argparse.Namespace, app: App) -> int:
    from rag.server import create_api

    keys = KeyStore(app.settings.home)
    api = create_api(app, keys, max_queue=args.max_queue, timeout_s=args.timeout)
    if args.openapi:
        print(json.dumps(api.openapi(), indent=2, sort_keys=True))
        return 0
    if not keys.load() and not is_loopback(args.host):
        raise UserError(
            f"refusing to serve {args.host} without API keys: anyone on the network could read "
            "and change the library; create one with `rag keys create --collection NAME`"
        )
    import uvicorn

    api.state.warmup.start()  # /readyz answers 200 once both models are loaded
    print(f"rag API on http://{args.host}:{args.port}/ (docs at /docs)", flush=True)
    uvicorn.run(api, host=args.host, port=args.port, log_level="warning", timeout_keep_alive=30)
    return 0
