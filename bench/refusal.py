"""Calibrate and measure the refusal checks: per-check figures, threshold trade-off, cross-validation.

    python bench/refusal.py --set ../shared/devset/questions.jsonl ../shared/devset/docs \
        --set tests/data/near_miss.jsonl sample_docs --json

Each set's documents are ingested into their own RAG_HOME under --home-root (incremental, so a
second run is quick). Every question is retrieved once; the checks are then replayed with other
thresholds on the recorded signals, so the sweeps need no more model calls.

Reported:
- per check: refusal rate on unanswerable questions and false-refusal rate on answerable ones for
  the topic gate alone, each check alone on top of it, and the whole cascade with the settings;
- trade-off: the cascade's rates over a grid of the two support thresholds;
- cross-validation: thresholds chosen on 4/5 of the questions (stratified, 3 repeats), rates
  measured on the held-out fifth: the figure to expect on documents the thresholds never saw.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rag.answerability import judge  # noqa: E402
from rag.evaluate import load_questions  # noqa: E402
from rag.retrieve import off_topic  # noqa: E402

GATE = {  # topic gate grid
    "refuse_below": [0.25, 0.30, 0.35],
    "refuse_unless_similar": [0.55, 0.60, 0.65, 0.70, 0.75],
    "refuse_min_coverage": [0.20, 0.25, 0.30, 0.35, 0.40, 0.45, 0.50],
}
SUPPORT = {  # support thresholds grid
    "refuse_min_typed_support": [round(0.30 + 0.05 * i, 2) for i in range(13)],
    "refuse_min_support": [round(0.40 + 0.05 * i, 2) for i in range(11)],
}
CHECKS = ["key_terms", "default", "answer_type", "support"]
MAX_FALSE_REFUSAL = 0.08  # the cap the calibration aims under on the training folds


@dataclass
class Record:
    set: str
    id: str
    unanswerable: bool
    best: float
    coverage: float
    signals: object  # answerability.Signals (None when no passage came back)


def collect(sets: list[tuple[str, str]], home_root: Path) -> list[Record]:
    from rag.app import build_app
    from rag.settings import load_settings

    records: list[Record] = []
    for questions_path, docs in sets:
        name = Path(questions_path).stem
        home = home_root / name
        env = {**os.environ, "RAG_HOME": str(home)}
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from ingest.cli import main; sys.exit(main())",
                "add",
                docs,
                "--json",
            ],
            env=env,
            check=True,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )
        app = build_app(load_settings(home=home))
        try:
            for question in load_questions(Path(questions_path)):
                retrieval = app.engine.retrieve(question.question)
                records.append(
                    Record(
                        name,
                        question.id,
                        not question.answerable,
                        retrieval.best_score,
                        retrieval.coverage,
                        retrieval.signals or forced_signals(app, question.question, retrieval),
                    )
                )
        finally:
            app.close()
    return records


def forced_signals(app, question: str, retrieval):
    """The evidence signals even for a question the topic gate refused (for the sweeps)."""
    from rag.answerability import read_evidence

    name = app.settings.collection
    index = app.keywords.load(name, app.store.collection(name, create=False))
    embedder = app.models.embedder
    return read_evidence(
        question,
        retrieval.sources,
        embedder.get_query_embedding(question),
        embedder.get_text_embedding_batch,
        index.idf,
    )


def decide(record: Record, settings) -> str | None:
    """The check that refuses the question under `settings`, or None."""
    if off_topic(record.best, record.coverage, settings):
        return "topic"
    return judge(record.signals, settings).signal


def rates(records: list[Record], refused: list[bool]) -> tuple[float, float]:
    unanswerable = [r for r, x in zip(records, refused, strict=True) if r.unanswerable]
    answerable = [r for r, x in zip(records, refused, strict=True) if not r.unanswerable]
    u = sum(x for r, x in zip(records, refused, strict=True) if r.unanswerable)
    a = sum(x for r, x in zip(records, refused, strict=True) if not r.unanswerable)
    return (u / max(len(unanswerable), 1), a / max(len(answerable), 1))


def settings_for(base, **changes):
    return base.model_copy(update=changes)


def per_check(records: list[Record], base) -> dict:
    """Topic gate alone, each check alone on top of it, and the cascade as configured."""
    off = {
        "refuse_missing_terms": False,
        "refuse_unstated_default": False,
        "refuse_min_typed_support": -1.0,
        "refuse_min_support": -1.0,
    }
    alone = {
        "key_terms": {"refuse_missing_terms": True},
        "default": {"refuse_unstated_default": True},
        "answer_type": {"refuse_min_typed_support": base.refuse_min_typed_support},
        "support": {"refuse_min_support": base.refuse_min_support},
    }
    rows = {}
    configs = {"topic gate only": off}
    configs.update({f"topic + {check}": {**off, **alone[check]} for check in CHECKS})
    configs["all checks (settings)"] = {}
    for label, changes in configs.items():
        settings = settings_for(base, **changes)
        refused = [decide(r, settings) is not None for r in records]
        rows[label] = by_set(records, refused)
    return rows


def by_set(records: list[Record], refused: list[bool]) -> dict:
    result = {}
    for name in ["all", *sorted({r.set for r in records})]:
        pairs = [(r, x) for r, x in zip(records, refused, strict=True) if name in ("all", r.set)]
        u, a = rates([p[0] for p in pairs], [p[1] for p in pairs])
        result[name] = {"refusal": round(u, 3), "false_refusal": round(a, 3)}
    return result


def decision_matrix(records: list[Record], base) -> tuple[list[dict], list[list[bool]]]:
    names = [*GATE, *SUPPORT]
    combos = [
        dict(zip(names, values, strict=True))
        for values in itertools.product(*GATE.values(), *SUPPORT.values())
    ]
    matrix = []
    for combo in combos:
        settings = settings_for(base, **combo)
        matrix.append([decide(r, settings) is not None for r in records])
    return combos, matrix


def objective(records: list[Record], refused: list[bool], indices: list[int]) -> float:
    u, a = rates([records[i] for i in indices], [refused[i] for i in indices])
    return u - 10 * max(0.0, a - MAX_FALSE_REFUSAL) - 0.01 * a


def cross_validate(records, combos, matrix, repeats: int = 3, folds: int = 5) -> dict:
    held = []
    rng = random.Random(0)
    for _ in range(repeats):
        assignment = {}
        for label in (True, False):
            ids = [i for i, r in enumerate(records) if r.unanswerable == label]
            rng.shuffle(ids)
            assignment.update({i: k % folds for k, i in enumerate(ids)})
        predicted = [False] * len(records)
        for fold in range(folds):
            train = [i for i in range(len(records)) if assignment[i] != fold]
            best = max(range(len(combos)), key=lambda c: objective(records, matrix[c], train))
            for i in range(len(records)):
                if assignment[i] == fold:
                    predicted[i] = matrix[best][i]
        held.append(by_set(records, predicted))
    mean = {}
    for name in held[0]:
        mean[name] = {
            key: round(sum(h[name][key] for h in held) / len(held), 3)
            for key in ("refusal", "false_refusal")
        }
    return {"held_out_mean": mean, "repeats": held}


def trade_off(records: list[Record], base) -> list[dict]:
    rows = []
    for typed in [0.4, 0.5, 0.6, 0.7, 0.8]:
        for support in [0.4, 0.6, 0.7, 0.8]:
            settings = settings_for(
                base, refuse_min_typed_support=typed, refuse_min_support=support
            )
            refused = [decide(r, settings) is not None for r in records]
            u, a = rates(records, refused)
            rows.append(
                {
                    "min_typed_support": typed,
                    "min_support": support,
                    "refusal": round(u, 3),
                    "false_refusal": round(a, 3),
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--set",
        nargs=2,
        action="append",
        metavar=("QUESTIONS", "DOCS"),
        required=True,
        help="a questions file (rag eval format) and the folder of its documents",
    )
    parser.add_argument(
        "--home-root", type=Path, help="where the sets are ingested (default: temp)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = parser.parse_args(argv)
    from rag.settings import load_settings

    home_root = args.home_root or Path(tempfile.mkdtemp(prefix="refusal-bench-"))
    records = collect(args.set, home_root)
    base = load_settings(home=home_root)
    combos, matrix = decision_matrix(records, base)
    everyone = list(range(len(records)))
    best = max(range(len(combos)), key=lambda c: objective(records, matrix[c], everyone))
    result = {
        "questions": {
            "unanswerable": sum(r.unanswerable for r in records),
            "answerable": sum(not r.unanswerable for r in records),
        },
        "settings": {k: getattr(base, k) for k in [*GATE, *SUPPORT]},
        "per_check": per_check(records, base),
        "trade_off": trade_off(records, base),
        "fit_on_all": {"thresholds": combos[best], **by_set(records, matrix[best])},
        "cross_validated": cross_validate(records, combos, matrix),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(render(result))
    return 0


def render(result: dict) -> str:
    lines = ["| checks | " + " | ".join(result["per_check"]["topic gate only"]) + " |"]
    lines.append("|---" * (1 + len(result["per_check"]["topic gate only"])) + "|")
    for label, sets in result["per_check"].items():
        cells = [f"{v['refusal']:.2f} / {v['false_refusal']:.2f}" for v in sets.values()]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("| min typed support | min support | refusal | false refusal |")
    lines.append("|---|---|---|---|")
    for row in result["trade_off"]:
        lines.append(
            f"| {row['min_typed_support']} | {row['min_support']} | {row['refusal']:.2f} | "
            f"{row['false_refusal']:.2f} |"
        )
    lines.append("")
    lines.append(f"fit on all: {json.dumps(result['fit_on_all'])}")
    lines.append(
        f"cross-validated (held out): {json.dumps(result['cross_validated']['held_out_mean'])}"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
