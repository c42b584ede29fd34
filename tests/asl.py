"""A small interpreter of the Amazon States Language subset the reindex state machine uses.

Neither moto nor LocalStack runs a Distributed Map with a JSONL ItemReader, so the tests walk
template.yaml's definition with this instead: Task (``lambda:invoke`` with Parameters,
ResultSelector, ResultPath, OutputPath), Choice (``IsPresent``), Map (ItemReader
``s3:getObject`` JSONL or ItemsPath, ItemSelector with ``$$.Map.Item.Value``,
ToleratedFailurePercentage 0) and the JSONPath forms ``$``, ``$.a.b``. It calls the real
handler in-process; items run one after another (their order is not the machine's concern:
each work item is independent).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

Invoke = Callable[[Any], Any]


class MapFailedError(Exception):
    """A Map state's item failed and ToleratedFailurePercentage is 0: the execution fails."""


def path_get(data: Any, path: str, context: Mapping[str, Any]) -> Any:
    root, rest = (context, path[2:]) if path.startswith("$$") else (data, path[1:])
    value = root
    for part in [p for p in rest.split(".") if p]:
        value = value[part]
    return value


def has_path(data: Any, path: str) -> bool:
    try:
        path_get(data, path, {})
    except (KeyError, TypeError):
        return False
    return True


def path_set(data: Any, path: str, value: Any) -> Any:
    if path == "$":
        return value
    result = dict(data)
    target = result
    parts = path[2:].split(".")
    for part in parts[:-1]:
        target[part] = dict(target.get(part, {}))
        target = target[part]
    target[parts[-1]] = value
    return result


def fill(template: Any, data: Any, context: Mapping[str, Any]) -> Any:
    """Parameters / ItemSelector / ResultSelector: keys ending in .$ are paths."""
    if isinstance(template, dict):
        out = {}
        for key, value in template.items():
            if key.endswith(".$"):
                out[key[:-2]] = path_get(data, value, context)
            else:
                out[key] = fill(value, data, context)
        return out
    if isinstance(template, list):
        return [fill(value, data, context) for value in template]
    return template


def run(
    definition: Mapping[str, Any],
    data: Any,
    invoke: Invoke,
    read_s3: Callable[[str, str], bytes],
    context: Mapping[str, Any] | None = None,
) -> Any:
    """Execute ``definition`` on ``data``; Lambda tasks call ``invoke(payload)``."""
    context = context or {}
    states = definition["States"]
    name = definition["StartAt"]
    while True:
        state = states[name]
        kind = state["Type"]
        if kind == "Task":
            if state["Resource"] != "arn:aws:states:::lambda:invoke":
                raise AssertionError(f"{name}: unsupported resource {state['Resource']}")
            parameters = fill(state["Parameters"], data, context)
            response = {"Payload": json.loads(json.dumps(invoke(parameters["Payload"])))}
            result = (
                fill(state["ResultSelector"], response, context)
                if "ResultSelector" in state
                else response
            )
            data = path_set(data, state["ResultPath"], result) if "ResultPath" in state else result
            if "OutputPath" in state:
                data = path_get(data, state["OutputPath"], context)
        elif kind == "Choice":
            nxt = state.get("Default")
            for choice in state["Choices"]:
                if choice.get("IsPresent") is True and has_path(data, choice["Variable"]):
                    nxt = choice["Next"]
                    break
            name = nxt
            continue
        elif kind == "Map":
            if "ItemReader" in state:
                reader = state["ItemReader"]
                assert reader["ReaderConfig"]["InputType"] == "JSONL"
                where = fill(reader["Parameters"], data, context)
                raw = read_s3(where["Bucket"], where["Key"])
                items = [json.loads(line) for line in raw.splitlines() if line.strip()]
            else:
                items = path_get(data, state["ItemsPath"], context)
            results = []
            failures = 0
            for index, item in enumerate(items):
                item_context = {**context, "Map": {"Item": {"Index": index, "Value": item}}}
                item_input = fill(state["ItemSelector"], data, item_context)
                try:
                    results.append(run(state["ItemProcessor"], item_input, invoke, read_s3))
                except Exception:  # noqa: BLE001 - counted, then judged by the tolerance
                    failures += 1
            if failures and state.get("ToleratedFailurePercentage", 0) == 0:
                raise MapFailedError(f"{name}: {failures} of {len(items)} items failed")
            data = path_set(data, state.get("ResultPath", "$"), {"items": len(items)})
        else:
            raise AssertionError(f"{name}: unsupported state type {kind}")
        if state.get("End"):
            return data
        name = state["Next"]
