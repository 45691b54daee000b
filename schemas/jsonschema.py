"""JSON Schema files for emitters in other languages, generated from the event models.

The files under schemas/json/ are committed so emitters can use them without Python; a unit test
fails when they drift from the models. Regenerate them with:

    python -m schemas.jsonschema
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from schemas.events import EVENT_ADAPTER, EVENT_MODELS, EVENT_TYPES

SCHEMA_DIR = Path(__file__).parent / "json"
DIALECT = "https://json-schema.org/draft/2020-12/schema"
# A URN, not a URL: the schemas are published in this repository, not at a web address.
ID_PREFIX = "urn:servicewatch:schema:"
UNION_FILENAME = "event.schema.json"



def generate_schemas() -> dict[str, str]:
    """Return filename -> file text for one schema per event type plus the union."""
    files = {}
    for model in EVENT_MODELS:
        event_type = model.model_fields["type"].default
        files[f"{event_type}.schema.json"] = _render(model.model_json_schema(), event_type)
    union = EVENT_ADAPTER.json_schema()
    union["title"] = "Event"
    union["description"] = (
        "Any servicewatch interaction event: one JSON object per Kafka message on the events "
        "topic, keyed by case_id. The `type` field selects the event ("
        + ", ".join(EVENT_TYPES)
        + "); each is described under $defs and in its own <type>.schema.json."
    )
    files[UNION_FILENAME] = _render(union, "event")
    return files


def write_schemas(directory: Path | str = SCHEMA_DIR) -> list[Path]:
    """Write the generated schemas into directory, removing stale *.schema.json files there.

    Returns the paths written.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = generate_schemas()
    # A schema for an event type that no longer exists would mislead emitters.
    for stale in directory.glob("*.schema.json"):
        if stale.name not in files:
            stale.unlink()
    written = []
    for name, text in files.items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def _render(schema: dict[str, Any], name: str) -> str:
    schema = {"$schema": DIALECT, "$id": f"{ID_PREFIX}{name}", **schema}
    # sort_keys and a trailing newline give byte-stable files, so the drift test compares text.
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main() -> None:
    for path in write_schemas():
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
