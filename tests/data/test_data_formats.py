"""Format detection and normalisation to TRL's conversational prompt-completion form."""

import pytest

from dtmerge.data import detect_format, normalise
from dtmerge.errors import DataError


def test_alpaca_input_is_appended_after_a_blank_line_and_system_kept():
    rec = {"instruction": "Translate.", "input": "Bonjour", "output": "Hello",
           "system": "Be brief.", "source": "s1", "id": 7}
    assert detect_format(rec) == "alpaca"
    out = normalise(rec, "alpaca")
    assert out["prompt"] == [{"role": "system", "content": "Be brief."},
                             {"role": "user", "content": "Translate.\n\nBonjour"}]
    assert out["completion"] == [{"role": "assistant", "content": "Hello"}]
    assert out["source"] == "s1" and out["id"] == 7
    assert "instruction" not in out and "system" not in out


def test_alpaca_without_input_has_only_the_instruction():
    out = normalise({"instruction": "Say hi.", "input": "", "output": "hi"}, "alpaca")
    assert out["prompt"] == [{"role": "user", "content": "Say hi."}]


SHAREGPT = {"conversations": [
    {"from": "system", "value": "You help."},
    {"from": "human", "value": "q1"}, {"from": "gpt", "value": "a1"},
    {"from": "human", "value": "q2"}, {"from": "gpt", "value": "a2"},
], "source": "chat"}


def test_sharegpt_first_turn_only():
    assert detect_format(SHAREGPT) == "sharegpt"
    out = normalise(SHAREGPT, "sharegpt", first_turn_only=True)
    assert out["prompt"] == [{"role": "system", "content": "You help."},
                             {"role": "user", "content": "q1"}]
    assert out["completion"] == [{"role": "assistant", "content": "a1"}]
    assert out["source"] == "chat"


def test_sharegpt_all_turns_ends_with_last_assistant_turn():
    out = normalise(SHAREGPT, "sharegpt", first_turn_only=False)
    assert [m["content"] for m in out["prompt"]] == ["You help.", "q1", "a1", "q2"]
    assert [m["role"] for m in out["prompt"]] == ["system", "user", "assistant", "user"]
    assert out["completion"] == [{"role": "assistant", "content": "a2"}]


def test_openai_messages_with_top_level_system_and_content_parts():
    rec = {"messages": [{"role": "user", "content": [{"type": "text", "text": "hey"}]},
                        {"role": "assistant", "content": "yo"}], "system": "S"}
    assert detect_format(rec) == "messages"
    out = normalise(rec, "messages")
    assert out["prompt"] == [{"role": "system", "content": "S"}, {"role": "user", "content": "hey"}]
    assert out["completion"] == [{"role": "assistant", "content": "yo"}]


def test_prompt_completion_strings_and_message_lists():
    rec = {"prompt": "2+2?", "completion": "4"}
    assert detect_format(rec) == "prompt_completion"
    out = normalise(rec, "prompt_completion")
    assert out == {"prompt": [{"role": "user", "content": "2+2?"}],
                   "completion": [{"role": "assistant", "content": "4"}]}
    msgs = {"prompt": [{"role": "user", "content": "q"}],
            "completion": [{"role": "assistant", "content": "a"}]}
    assert normalise(msgs, "prompt_completion") == msgs


@pytest.mark.parametrize("rec,fmt", [
    ({"instruction": "x", "input": "", "output": "  "}, "alpaca"),
    ({"messages": [{"role": "user", "content": "q"}]}, "messages"),
    ({"prompt": "q", "completion": ""}, "prompt_completion"),
])
def test_empty_response_is_dropped(rec, fmt):
    assert normalise(rec, fmt) is None


def test_unknown_format_lists_keys_and_known_formats():
    with pytest.raises(DataError) as err:
        detect_format({"question": "q", "answer": "a"})
    msg = str(err.value)
    assert "answer" in msg and "question" in msg
    for fmt in ("alpaca", "sharegpt", "messages", "prompt_completion"):
        assert fmt in msg


def test_unknown_speaker_is_named():
    with pytest.raises(DataError, match="robot"):
        normalise({"conversations": [{"from": "robot", "value": "x"}]}, "sharegpt")
