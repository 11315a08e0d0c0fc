"""The repository stands alone: a user's clone has nothing beside it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Built from parts, so this file does not name what it looks for.
OUTSIDE = re.compile(
    "|".join(
        [
            re.escape("..") + r"[/\\]" + "shar" + "ed",
            r"[/\\]" + "shar" + r"ed[/\\]spec",
            r"parents?\[\d+\]\.parent\s*/\s*[\"']" + "shar" + "ed",
        ]
    )
)


def tracked_files() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    return [ROOT / name for name in out.decode().split("\0") if name]


def test_nothing_in_the_repository_reads_or_links_outside_it() -> None:
    files = tracked_files()
    assert len(files) > 50 and ROOT / "README.md" in files
    hits = []
    for path in files:
        if not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data:  # images
            continue
        for no, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
            if OUTSIDE.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{no}: {line.strip()[:100]}")
    assert hits == []


def test_the_pattern_finds_what_it_must() -> None:
    for line in [
        "see ../" + "shared/spec/profit-model.md",
        'SPEC = Path(__file__).resolve().parents[2].parent / "' + 'shared" / "spec"',
        "/work/" + "shared/spec/x",
    ]:
        assert OUTSIDE.search(line), line
    assert not OUTSIDE.search("tests/data/spec/example-c1.events.jsonl")


def test_the_golden_examples_are_in_the_repository() -> None:
    spec = ROOT / "tests" / "data" / "spec"
    for name in ("example-c1", "example-mixed"):
        for part in ("events", "expected"):
            assert (spec / f"{name}.{part}.jsonl").stat().st_size > 0
    assert (ROOT / "docs" / "contract.md").is_file()
