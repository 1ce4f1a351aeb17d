"""The fuzzers' budget and their closing report line.

OFFERD_FUZZ_EXAMPLES inputs per target: small by default (`make test`, derandomized
so every run tries the same inputs), large in `make fuzz` (random, seed printed).
"""

from __future__ import annotations

import json
import os
import random

from hypothesis import HealthCheck, seed, settings

EXAMPLES = int(os.environ.get("OFFERD_FUZZ_EXAMPLES", "200"))
# A long run explores; the short one in `make test` must be the same every time.
RANDOM = os.environ.get("OFFERD_FUZZ_RANDOM", "") not in ("", "0")
SEED = int(os.environ.get("OFFERD_FUZZ_SEED", "0")) or random.randrange(1, 2**31)


def fuzz_settings(max_examples: int) -> settings:
    return settings(max_examples=max(1, max_examples), deadline=None, database=None,
                    derandomize=not RANDOM, suppress_health_check=list(HealthCheck), print_blob=True)


def fuzz(max_examples: int):
    """Decorates a @given test with the budget (and the printed seed in a random run)."""
    def wrap(test):
        test = fuzz_settings(max_examples)(test)
        return seed(SEED)(test) if RANDOM else test
    return wrap


def seed_note() -> str:
    return f"random, seed {SEED} (OFFERD_FUZZ_SEED={SEED} repeats it)" if RANDOM else "derandomized"


def report(target: str, inputs: int, rejected: int, crashes: int, **extra) -> None:
    """One JSON line per target: what the lead reports."""
    print(json.dumps({"target": target, "inputs": inputs, "rejected": rejected, "crashes": crashes,
                      "mode": seed_note(), **extra}), flush=True)
