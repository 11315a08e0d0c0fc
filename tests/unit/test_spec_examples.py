"""The spec's worked examples are the oracle for `replay` (spec section 9)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from typing import Any

import pytest
from pydantic import BaseModel

from models.replay import replay
from models.settings import Settings
from models.timeutil import to_us
from streams.cli import _timestamp
from tests.golden import SPEC
from tests.oracle import compare_lines

CASES = [
    ("example-c1", None),
    ("example-mixed", "2026-08-15T00:00:00Z"),
]


def _replay(name: str, as_of: str | None) -> list[dict[str, Any]]:
    out = io.StringIO()
    with open(SPEC / f"{name}.events.jsonl", "rb") as f:
        replay(f, Settings(), out, as_of_us=to_us(_timestamp(as_of)) if as_of else None)
    return [json.loads(line) for line in out.getvalue().splitlines()]


@pytest.mark.parametrize(("name", "as_of"), CASES)
def test_replay_matches_the_oracle(name: str, as_of: str | None) -> None:
    expected = [
        json.loads(line) for line in (SPEC / f"{name}.expected.jsonl").read_text().splitlines()
    ]
    assert compare_lines(expected, _replay(name, as_of)) == []


def test_worked_example_intermediate_figures() -> None:
    """Section 10's prose, beyond the oracle file: alert ids and the final snapshot."""
    out = _replay("example-c1", None)
    alerts = [r["value"] for r in out if r["topic"] == "profitability-alerts"]
    assert [a["kind"] for a in alerts] == ["at_risk", "became_unprofitable"]
    assert alerts[1]["alert_id"] == "610f0742-d221-581a-9930-da37145ce7fb"
    snap = out[-1]["value"]
    assert snap["lifetime"]["net_profit"] == "-844.03"
    assert snap["open_invoices"]["count"] == 0
    assert "became unprofitable" in alerts[1]["summary"]


def test_every_output_is_complete_per_sections_6_and_7() -> None:
    from models.outputs import Alert, DeadLetter, Snapshot

    models: dict[str, type[BaseModel]] = {
        "profitability-alerts": Alert,
        "profitability-snapshots": Snapshot,
        "profitability-dlq": DeadLetter,
    }
    out = _replay("example-mixed", "2026-08-15T00:00:00Z")
    for rec in out:
        models[rec["topic"]].model_validate(rec["value"])  # extra="forbid": no stray fields either
        if rec["topic"] != "profitability-dlq":
            assert rec["key"] == rec["value"]["customer_id"]


def test_cli_replay_is_the_same_and_deterministic() -> None:
    cmd = [
        sys.executable,
        "-m",
        "streams.cli",
        "replay",
        str(SPEC / "example-mixed.events.jsonl"),
        "--as-of",
        "2026-08-15T00:00:00Z",
    ]
    runs = [
        subprocess.run(cmd, capture_output=True, text=True, check=True).stdout for _ in range(2)
    ]

    def stable(text: str) -> list[dict[str, object]]:
        recs = [json.loads(line) for line in text.splitlines()]
        for r in recs:
            if r["topic"] == "profitability-dlq":
                r["value"].pop("received_at")  # wall clock, by contract
        return recs

    assert stable(runs[0]) == stable(runs[1])
    assert stable(runs[0]) == stable(
        "\n".join(json.dumps(r) for r in _replay("example-mixed", "2026-08-15T00:00:00Z"))
    )
