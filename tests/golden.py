"""Where the contract's golden examples live: inside the repository (tests/data/spec)."""

from __future__ import annotations

from pathlib import Path

SPEC = Path(__file__).resolve().parent / "data" / "spec"
