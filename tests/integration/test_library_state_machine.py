"""Random walks over a document library keep its invariants: manifest, Chroma store and keyword
index agree, `ingest check` is clean, `--sync` mirrors the folder, every stored file is found.

Short walks of tests/integration/library_machine.py with the real commands and models;
bench/soak.py takes long ones (docs/soak.md).
"""

import pytest
from hypothesis.stateful import run_state_machine_as_test

from tests.integration.library_machine import STATS, LibraryMachine, walk_settings
from tests.integration.server_pass import SERVER_PASS

pytestmark = pytest.mark.integration

# Each command costs seconds (it loads the embedding model), so the walks stop running commands
# once they have spent COMMAND_BUDGET_S on them (about 4 minutes in all on 2 cores). Without
# shrinking, a failure is reported at once with every step of its walk; bench/soak.py shrinks.
EXAMPLES = 8
STEPS = 12
COMMAND_BUDGET_S = 160
if SERVER_PASS:  # a shorter walk against the Chroma server keeps that pass within its time
    COMMAND_BUDGET_S = 60


def test_library_keeps_its_invariants_over_random_steps():
    STATS.budget_s = STATS.command_seconds + COMMAND_BUDGET_S
    try:
        run_state_machine_as_test(
            LibraryMachine, settings=walk_settings(EXAMPLES, STEPS, shrink=False)
        )
    finally:
        STATS.budget_s = None
        print(STATS.to_json())  # shown by pytest when the test fails
