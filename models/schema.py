"""JSON Schema documents for upstream producers and downstream consumers."""

from __future__ import annotations

from typing import Any

from models.events import EVENT_MODELS
from models.outputs import Alert, DeadLetter, Snapshot


def schemas(*, outputs: bool = False) -> dict[str, dict[str, Any]]:
    docs = {kind: model.model_json_schema() for kind, model in EVENT_MODELS.items()}
    if outputs:
        docs["snapshot"] = Snapshot.model_json_schema()
        docs["alert"] = Alert.model_json_schema()
        docs["dead_letter"] = DeadLetter.model_json_schema()
    return docs
