"""Records and files for the recipe tests (a module of its own: importable by a unique name)."""

import json


def records(n):
    return [{"prompt": [{"role": "user", "content": f"where is alice born {i}"}],
             "completion": [{"role": "assistant", "content": "alice is born in paris" + " rome" * (i % 3)}],
             "source": "geo"} for i in range(n)]


def write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
