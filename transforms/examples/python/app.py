"""A log-pipeline transform in Python: parses each JSON log line, drops debug
lines, redacts e-mail addresses and bearer tokens in `msg`, adds the field
`env` from the stream's config, and partitions by `service`.

Config (`transform.config` in the stream's YAML), all optional:
{"env": "prod", "drop_levels": ["debug"]}
"""

import json
import re

import wit_world
from componentize_py_types import Err
from wit_world.imports.types import Outcome_Dropped, Outcome_Failed, Outcome_Ok, Transformed

EMAIL = re.compile(r"[^\s@]+@[^\s@]+\.[^\s@]+")
BEARER = re.compile(r"(?i)(bearer\s+)\S+")

settings = {"env": "unknown", "drop_levels": ["debug"]}


class WitWorld(wit_world.WitWorld):
    def init(self, config: str) -> None:
        if not config.strip():
            return
        try:
            given = json.loads(config)
        except ValueError as e:
            raise Err(f"config is not JSON: {e}")
        if "env" in given:
            if not isinstance(given["env"], str):
                raise Err("config.env must be a string")
            settings["env"] = given["env"]
        if "drop_levels" in given:
            settings["drop_levels"] = [str(x).lower() for x in given["drop_levels"]]

    def transform(self, batch):
        return [one(r) for r in batch]


def one(record):
    try:
        event = json.loads(record.data)
    except ValueError as e:
        return Outcome_Failed(f"record is not JSON: {e}")
    if not isinstance(event, dict):
        return Outcome_Failed("record is JSON but not an object")
    if str(event.get("level", "")).lower() in settings["drop_levels"]:
        return Outcome_Dropped()
    if isinstance(event.get("msg"), str):
        event["msg"] = BEARER.sub(r"\1<token>", EMAIL.sub("<email>", event["msg"]))
    event["env"] = settings["env"]
    service = event.get("service") if isinstance(event.get("service"), str) else "unknown"
    data = (json.dumps(event, separators=(",", ":")) + "\n").encode()
    return Outcome_Ok(Transformed(data, [("service", service)]))
