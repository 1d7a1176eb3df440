"""Detect the format of instruction records and normalise them to TRL's conversational
prompt-completion form, where the loss covers the completion only::

    {"prompt": [{"role": "system", ...}?, {"role": "user", "content": ...}, ...],
     "completion": [{"role": "assistant", "content": ...}],
     ...other top-level columns kept (e.g. "source", "id")}

Written by hand: TRL and datasets train on this form but offer no converter from the
Alpaca / ShareGPT / OpenAI-messages layouts users bring.
"""

from __future__ import annotations

import json
from typing import Any

from dtmerge.errors import DataError

FORMATS = ("alpaca", "sharegpt", "messages", "prompt_completion")

# Keys each format consumes; every other column is carried over unchanged.
_FORMAT_KEYS = {
    "alpaca": {"instruction", "input", "output", "response", "context", "system"},
    "sharegpt": {"conversations", "system"},
    "messages": {"messages", "system"},
    "prompt_completion": {"prompt", "completion", "system"},
}

# ShareGPT speakers and OpenAI roles -> chat-template roles.
_ROLE_NAMES = {
    "system": "system",
    "human": "user", "user": "user",
    "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant", "bard": "assistant",
    "bing": "assistant", "model": "assistant",
}


def detect_format(record: dict) -> str:
    """Guess a record's format from its keys.

    Args:
        record: One raw example.

    Returns:
        One of `FORMATS`.

    Raises:
        DataError: No known format matches; the message lists the keys found.
    """
    keys = set(record)
    if "conversations" in keys:
        return "sharegpt"
    if "messages" in keys:
        return "messages"
    if {"prompt", "completion"} <= keys:
        return "prompt_completion"
    # Dolly-style data names the response `response` and the input `context`.
    if "instruction" in keys and keys & {"output", "response"}:
        return "alpaca"
    raise DataError(
        f"cannot tell the data format from the keys {sorted(keys)}. Known formats: "
        "alpaca (instruction, input, output[, system]), sharegpt (conversations: "
        "[{from, value}]), messages (messages: [{role, content}]), prompt_completion "
        "(prompt, completion). Rename the columns or set data.format."
    )


def normalise(record: dict, fmt: str, first_turn_only: bool = True) -> dict | None:
    """Convert one record to the conversational prompt-completion form.

    Args:
        record: One raw example in format `fmt`.
        fmt: One of `FORMATS` (see `detect_format`).
        first_turn_only: For multi-turn dialogues keep only the first user turn and its
            answer (as the paper did); otherwise the prompt holds every turn up to the last
            user turn and the completion is the final assistant turn.

    Returns:
        The normalised record, or None when the example has an empty prompt or response and
        should be dropped (the caller counts these).

    Raises:
        DataError: The record does not have the structure of `fmt`.
    """
    if fmt not in FORMATS:
        raise DataError(f"unknown data format '{fmt}'; known: {', '.join(FORMATS)}")
    if fmt == "alpaca":
        prompt, completion = _from_alpaca(record)
    elif fmt == "prompt_completion":
        prompt, completion = _from_prompt_completion(record)
    else:
        key = "conversations" if fmt == "sharegpt" else "messages"
        turns = _turns(_require(record, key, fmt), key)
        prompt, completion = _split_dialogue(turns, first_turn_only)

    system = record.get("system")
    if isinstance(system, str) and system.strip() and not any(
        m["role"] == "system" for m in prompt
    ):
        prompt = [{"role": "system", "content": system}] + prompt

    if not completion or not any(m["content"].strip() for m in completion):
        return None
    if not any(m["role"] == "user" and m["content"].strip() for m in prompt):
        return None
    extra = {k: v for k, v in record.items() if k not in _FORMAT_KEYS[fmt]}
    return {"prompt": prompt, "completion": completion, **extra}


# --------------------------------------------------------------------------- per format


def _require(record: dict, key: str, fmt: str) -> Any:
    if key not in record:
        raise DataError(
            f"record has no '{key}' key, which format '{fmt}' needs (keys found: "
            f"{sorted(record)}); mixed formats in one data set are not supported"
        )
    return record[key]


def _text(value: Any, what: str) -> str:
    """A message body as a string: None -> "", OpenAI content parts -> joined text."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(p, dict) for p in value):
        if all(p.get("type", "text") == "text" for p in value):
            return "".join(str(p.get("text", "")) for p in value)
        kinds = sorted({str(p.get("type")) for p in value})
        raise DataError(f"{what} has non-text content parts {kinds}; only text is supported")
    if isinstance(value, (int, float)):
        return str(value)
    raise DataError(f"{what} must be a string, got {type(value).__name__}")


def _from_alpaca(record: dict) -> tuple[list[dict], list[dict]]:
    instruction = _text(_require(record, "instruction", "alpaca"), "'instruction'")
    extra_input = _text(record.get("input", record.get("context")), "'input'")
    output_key = "output" if "output" in record else "response"
    output = _text(_require(record, output_key, "alpaca"), f"'{output_key}'")
    # Alpaca's input is context for the instruction: one user turn, separated by a blank line.
    user = f"{instruction}\n\n{extra_input}" if extra_input.strip() else instruction
    return [{"role": "user", "content": user}], [{"role": "assistant", "content": output}]


def _from_prompt_completion(record: dict) -> tuple[list[dict], list[dict]]:
    prompt = _require(record, "prompt", "prompt_completion")
    completion = _require(record, "completion", "prompt_completion")
    if isinstance(prompt, list):
        prompt_msgs = _turns(prompt, "prompt")
    else:
        prompt_msgs = [{"role": "user", "content": _text(prompt, "'prompt'")}]
    if isinstance(completion, list):
        completion_msgs = _turns(completion, "completion")
    else:
        completion_msgs = [{"role": "assistant", "content": _text(completion, "'completion'")}]
    return prompt_msgs, completion_msgs


def _turns(raw: Any, key: str) -> list[dict]:
    """ShareGPT turns ({from, value}) or OpenAI messages ({role, content}) -> messages."""
    if isinstance(raw, str):  # CSV cells hold nested lists as JSON text
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            raise DataError(f"'{key}' is a string that is not a JSON list of messages") from None
    if not isinstance(raw, list):
        raise DataError(f"'{key}' must be a list of messages, got {type(raw).__name__}")
    turns = []
    for i, turn in enumerate(raw):
        if not isinstance(turn, dict):
            raise DataError(f"'{key}'[{i}] must be an object, got {type(turn).__name__}")
        speaker = turn.get("from", turn.get("role"))
        role = _ROLE_NAMES.get(str(speaker).lower())
        if role is None:
            raise DataError(
                f"'{key}'[{i}] has speaker {speaker!r}; expected one of "
                f"{sorted(_ROLE_NAMES)} under 'from' or 'role'"
            )
        body = turn.get("value", turn.get("content"))
        turns.append({"role": role, "content": _text(body, f"'{key}'[{i}]")})
    return turns


def _split_dialogue(turns: list[dict], first_turn_only: bool) -> tuple[list[dict], list[dict]]:
    """Cut a dialogue into (prompt, completion) at the first or the last answered user turn."""
    answers = [
        i for i, t in enumerate(turns)
        if t["role"] == "assistant" and any(p["role"] == "user" for p in turns[:i])
    ]
    if not answers:
        return turns, []
    cut = answers[0] if first_turn_only else answers[-1]
    return turns[:cut], [turns[cut]]
