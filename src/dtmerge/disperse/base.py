"""The protocol every dispersal strategy follows, and the texts strategies look at."""

from __future__ import annotations

from typing import Protocol

from dtmerge.config import DisperseConfig


class DisperseStrategy(Protocol):
    """Assign each normalised record to one of `cfg.num_portions` portions.

    A strategy is a plain function registered in `dtmerge.disperse.registry`.

    Args:
        records: Normalised records (`prompt`/`completion` message lists plus other columns).
        cfg: The disperse section of the run config (K = `cfg.num_portions`, seed...).

    Returns:
        One portion index in `range(cfg.num_portions)` per record, in record order.

    Raises:
        DataError: The records cannot be split this way (the message says what to change).
    """

    def __call__(self, records: list[dict], cfg: DisperseConfig) -> list[int]: ...


def _contents(messages, roles: tuple[str, ...]) -> str:
    if isinstance(messages, str):
        return messages
    return "\n".join(m.get("content", "") for m in messages or [] if m.get("role") in roles)


def instruction_text(record: dict) -> str:
    """The user turns of the prompt (system prompts are left out: they are often shared by
    every example and would drown the topic signal)."""
    return _contents(record.get("prompt"), ("user",))


def response_text(record: dict) -> str:
    """The assistant turns of the completion."""
    return _contents(record.get("completion"), ("assistant",))


def text_for(record: dict, embed_on: str) -> str:
    """The text to embed: "instruction", "response" or "both" (instruction, then response)."""
    if embed_on == "instruction":
        return instruction_text(record)
    if embed_on == "response":
        return response_text(record)
    return instruction_text(record) + "\n\n" + response_text(record)
