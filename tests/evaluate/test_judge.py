import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import SimpleNamespace

import pytest

from dtmerge.config import EvalConfig
from dtmerge.errors import DtmError
from dtmerge.evaluate.judge import judge_answers, judge_task_result, parse_rating


class FakeJudge(BaseHTTPRequestHandler):
    """OpenAI-compatible /v1/chat/completions that rates answers mentioning paris 9, others 2."""

    seen: list = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeJudge.seen.append((self.path, body))
        answer = body["messages"][-1]["content"].split("[Assistant's answer]")[-1]
        verdict = "Accurate. [[9]]" if "paris" in answer else "Unhelpful. Rating: 2"
        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": verdict}}]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(data.encode())

    def log_message(self, *args):
        pass


@pytest.fixture
def judge_url():
    server = HTTPServer(("127.0.0.1", 0), FakeJudge)  # port 0: a free port
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    FakeJudge.seen.clear()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_parse_rating_forms():
    assert parse_rating("ok [[7]]") == 7 and parse_rating("Rating: 3.5") == 3.5
    assert parse_rating("[[12]]") == 10 and parse_rating("no score") is None


def test_answers_are_rated_through_the_endpoint(judge_url):
    qs = [{"id": 0, "question": "capital of france?", "reference": "paris"},
          {"id": 1, "question": "capital of italy?", "reference": None}]
    items = judge_answers(qs, ["it is paris", "no idea"], judge_url, "judge-m")
    assert [i["score"] for i in items] == [9.0, 2.0]
    path, body = FakeJudge.seen[0]
    assert path == "/v1/chat/completions" and body["model"] == "judge-m"
    assert "paris" in body["messages"][-1]["content"] and body["temperature"] == 0.0


def test_judge_task_entry_for_a_tiny_model(judge_url, tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    qfile = tmp_path / "q.jsonl"
    qfile.write_text('{"question": "where is alice born"}\n{"turns": ["name a city"]}\n')
    lm = SimpleNamespace(model=AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                         tokenizer=AutoTokenizer.from_pretrained(tiny_model_dir))
    cfg = EvalConfig(judge_url=judge_url + "/v1", judge_model="m", judge_questions=str(qfile),
                     gen_kwargs={"max_gen_toks": 4})
    entry = judge_task_result(lm, cfg)
    assert entry["category"] == "instruction" and entry["metric"] == "judge_score"
    assert entry["n"] == 2 and len(FakeJudge.seen) == 2
    assert all(isinstance(i["response"], str) for i in entry["items"])
    assert 2.0 <= entry["score"] <= 9.0


def test_unreachable_judge_is_a_clear_error():
    with pytest.raises(DtmError, match="cannot reach judge endpoint"):
        judge_answers([{"id": 0, "question": "q"}], ["a"], "http://127.0.0.1:9", "m")


def test_judge_only_evaluation_through_evaluate_model(judge_url, tiny_model_dir, tmp_path):
    from dtmerge.evaluate.harness import evaluate_model

    qfile = tmp_path / "q.jsonl"
    qfile.write_text('{"question": "where is alice born", "reference": "paris"}\n')
    cfg = EvalConfig(judge_url=judge_url, judge_model="m", judge_questions=str(qfile),
                     gen_kwargs={"max_gen_toks": 4})
    res = evaluate_model(tiny_model_dir, cfg, tmp_path / "v.json", "base")
    assert list(res["tasks"]) == ["llm_judge"]
    assert res["tasks"]["llm_judge"]["items"][0]["gold"] == "paris"
    assert json.loads((tmp_path / "v.json").read_text())["settings"]["lm_eval_version"]
