import json
import logging

import pytest
import torch

from dtmerge.evaluate.monitor import KnowledgeMonitor, bias_ratio, detect_decline
from dtmerge.evaluate.probe import build_probe, build_probe_from_items
from dtmerge.models import ALPACA_CHAT_TEMPLATE

PEOPLE = ["alice", "bob", "carol", "dave"]
TRUE_CITY = {"alice": "paris", "bob": "london", "carol": "rome", "dave": "berlin"}
FALSE_CITY = {"alice": "london", "bob": "paris", "carol": "berlin", "dave": "rome"}


def test_planted_decline_in_a_synthetic_curve():
    steps = list(range(0, 220, 20))
    accs = [0.30, 0.40, 0.50, 0.58, 0.62, 0.61, 0.58, 0.52, 0.47, 0.43, 0.40]
    d = detect_decline(steps, accs, threshold=0.05)
    assert d["peak_step"] in (80, 100) and d["best_step"] == 80
    assert d["onset_step"] == d["peak_step"] + 20
    assert d["alert"] and d["alert_step"] == 140  # first point more than 0.05 below 0.62


def test_no_alert_on_a_rising_or_flat_noisy_curve():
    rising = detect_decline([0, 10, 20, 30], [0.2, 0.3, 0.4, 0.5], 0.05)
    assert not rising["alert"] and rising["onset_step"] is None and rising["best_step"] == 30
    noisy = detect_decline(list(range(8)), [0.5, 0.52, 0.49, 0.51, 0.5, 0.48, 0.5, 0.49], 0.05)
    assert not noisy["alert"] and noisy["onset_step"] is None


def test_bias_ratio_is_train_drop_over_heldout_drop():
    assert bias_ratio(2.0, 1.0, 2.0, 1.5) == pytest.approx(2.0)
    assert bias_ratio(2.0, 1.0, 2.0, 2.0) is None
    assert bias_ratio(None, 1.0, 2.0, 1.0) is None


def _chat(tok, person, city):
    return {"prompt": [{"role": "user", "content": f"where is {person} born"}],
            "completion": [{"role": "assistant", "content": f"{person} is born in {city}"}]}


def _probe_items(tok):
    items = []
    for p in PEOPLE:
        ctx = tok.apply_chat_template([{"role": "user", "content": f"where is {p} born"}],
                                      add_generation_prompt=True, tokenize=False)
        items.append((ctx + f"{p} is born in", [TRUE_CITY[p], FALSE_CITY[p]], 0))
    return items


def _teach(model, tok, facts, steps=60, lr=1e-2):
    """Plain loop that plants facts in the tiny model before the monitored run."""
    from dtmerge.evaluate.scoring import encode_record

    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    encoded = [encode_record(tok, _chat(tok, p, facts[p])) for p in PEOPLE]
    width = max(len(e[0]) for e in encoded)
    ids = torch.full((len(encoded), width), tok.pad_token_id)
    labels = torch.full((len(encoded), width), -100)
    for i, (seq, start) in enumerate(encoded):
        ids[i, :len(seq)] = torch.tensor(seq)
        labels[i, start:len(seq)] = torch.tensor(seq[start:])
    model.train()
    for _ in range(steps):
        loss = model(input_ids=ids, attention_mask=(labels != -100) | (ids != tok.pad_token_id),
                     labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()


@pytest.mark.slow
def test_monitor_catches_a_planted_decline_in_real_training(tmp_path, tiny_model_dir, caplog):
    """Teach true facts, then fine-tune on contradicting ones: the probe must peak and fall."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    torch.set_num_threads(1)
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.chat_template = ALPACA_CHAT_TEMPLATE
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    _teach(model, tok, TRUE_CITY)
    probe = build_probe_from_items(_probe_items(tok), tok)
    assert probe.accuracy(model) == 1.0
    held = [_chat(tok, p, TRUE_CITY[p]) for p in PEOPLE]
    out = tmp_path / "monitor" / "sft" / "monitor.jsonl"
    monitor = KnowledgeMonitor(probe, every_steps=2, drop_threshold=0.2, stop_on_drop=True,
                               heldout_records=held, out_path=out, tokenizer=tok, job_name="sft")
    data = Dataset.from_list([_chat(tok, p, FALSE_CITY[p]) for p in PEOPLE] * 8)
    args = SFTConfig(output_dir=str(tmp_path / "work"), max_steps=40, learning_rate=1e-3,
                     per_device_train_batch_size=4, logging_steps=1, save_strategy="no",
                     report_to=[], lr_scheduler_type="constant", dataloader_num_workers=0,
                     bf16=False, use_cpu=True)
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tok,
                         callbacks=[monitor])
    with caplog.at_level(logging.WARNING, logger="dtmerge.monitor"):
        trainer.train()
    assert trainer.state.global_step < 40, "stop_on_drop should end training early"
    assert any("fell more than" in r.message for r in caplog.records)
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert recs[0]["step"] == 0 and recs[0]["probe_acc"] == 1.0
    assert recs[-1]["probe_acc"] <= 0.75
    assert all(r["heldout_loss"] is not None for r in recs)
    # held-out loss (true facts) rises while training loss falls: the ratio turns negative
    assert recs[-1]["ratio"] is not None and recs[-1]["ratio"] < 0
    summary = json.loads((out.parent / "monitor_summary.json").read_text())
    assert summary["best_step"] == 0 and summary["alert"] and summary["job"] == "sft"
    assert any("alert" in r for r in recs)


def test_probe_from_local_task_dir(task_dir, tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    probe = build_probe(["knowledge"], [task_dir], tok, size=5, seed=0)
    assert len(probe) == 5 and all(len(c) == 4 for c in probe.choices)
    assert set(probe.sources) == {"tiny_mc"}
    assert all(0 <= g < 4 for g in probe.gold)


def test_resumed_run_keeps_the_curve_measured_before(tmp_path):
    from types import SimpleNamespace

    class CountingProbe:
        def __len__(self):
            return 1

        def accuracy(self, model):
            return 0.5

    out = tmp_path / "monitor.jsonl"
    out.write_text("".join(json.dumps({"step": s, "probe_acc": a, "train_loss": l,
                                       "heldout_loss": None, "ratio": None}) + "\n"
                           for s, a, l in [(0, 0.4, None), (10, 0.6, 2.0), (20, 0.7, 1.5)]))
    mon = KnowledgeMonitor(CountingProbe(), every_steps=10, out_path=out)
    state = SimpleNamespace(global_step=10)
    mon.on_train_begin(SimpleNamespace(), state, SimpleNamespace(), model=object())
    assert [r["step"] for r in mon.records] == [0, 10]  # step 20 was lost with the crash
    assert mon._last_loss == 2.0
