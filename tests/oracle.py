"""Compare replay output with a spec oracle: every field present in an expected
record must be equal in the actual record at the same position."""

from __future__ import annotations

from typing import Any


def mismatches(expected: Any, actual: Any, path: str = "") -> list[str]:
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path}: expected an object, got {actual!r}"]
        out: list[str] = []
        for k, v in expected.items():
            if k not in actual:
                out.append(f"{path}.{k}: missing")
            else:
                out.extend(mismatches(v, actual[k], f"{path}.{k}"))
        return out
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{path}: expected {expected!r}, got {actual!r}"]
        return [
            m
            for i, (e, a) in enumerate(zip(expected, actual, strict=True))
            for m in mismatches(e, a, f"{path}[{i}]")
        ]
    if expected != actual or (
        type(expected) is not type(actual)
        and not (isinstance(expected, (int, float)) and isinstance(actual, (int, float)))
    ):
        return [f"{path}: expected {expected!r}, got {actual!r}"]
    return []


def compare_lines(expected: list[Any], actual: list[Any]) -> list[str]:
    problems = []
    if len(expected) != len(actual):
        problems.append(f"expected {len(expected)} records, got {len(actual)}")
    for i, (e, a) in enumerate(zip(expected, actual, strict=False)):
        problems.extend(f"record {i}{m}" for m in mismatches(e, a))
    return problems
