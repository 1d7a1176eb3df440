"""The monitor keeps the best step's weights, stops with patience and restores them, and its
alerts reach a command and a webhook."""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import torch
from transformers import TrainerCallback

from dtmerge.evaluate.alerts import Alert, AlertSinks, send_alert
from dtmerge.evaluate.best_checkpoint import BestKeeper
from dtmerge.evaluate.monitor import KnowledgeMonitor


class ScriptedProbe:
    """A probe whose accuracy follows a script, one value per call: the test decides which
    step is best."""

    def __init__(self, accs):
        self.accs = list(accs)
        self.calls = 0

    def __len__(self):
        return 1

    def accuracy(self, model):
        acc = self.accs[min(self.calls, len(self.accs) - 1)]
        self.calls += 1
        return acc


class Snapshots(TrainerCallback):
    """The model's weights after every optimizer step (runs before the monitor)."""

    def __init__(self):
        self.at = {}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.at[state.global_step] = {k: v.detach().clone() for k, v in model.state_dict().items()}


def _train(tmp_path, tiny_model_dir, monitor, max_steps=8):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    torch.set_num_threads(1)
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    data = Dataset.from_list([{"prompt": f"say {w}", "completion": f" {w} {w}"}
                              for w in ("red", "green", "blue", "cyan")] * 8)
    args = SFTConfig(output_dir=str(tmp_path / "work"), max_steps=max_steps, learning_rate=5e-3,
                     per_device_train_batch_size=4, logging_steps=1, save_strategy="no",
                     report_to=[], lr_scheduler_type="constant", dataloader_num_workers=0,
                     use_cpu=True, disable_tqdm=True)
    snaps = Snapshots()
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tok,
                         callbacks=[snaps, monitor])
    trainer.train()
    return trainer, snaps


def _saved_weights(path):
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def test_best_checkpoint_holds_the_weights_of_the_recorded_best_step(tmp_path, tiny_model_dir):
    # probed at steps 0, 2, 4, 6, 8: the best (0.9) is at step 4, knowledge then falls
    probe = ScriptedProbe([0.5, 0.6, 0.9, 0.7, 0.4])
    keeper = BestKeeper(tmp_path / "models" / "sft_best", by="probe_acc")
    mon = KnowledgeMonitor(probe, every_steps=2, drop_threshold=0.3, keeper=keeper,
                           out_path=tmp_path / "monitor" / "monitor.jsonl", job_name="sft")
    trainer, snaps = _train(tmp_path, tiny_model_dir, mon)
    assert keeper.step == 4 and mon.summary["kept_step"] == 4
    info = json.loads((keeper.out_dir / "best.json").read_text())
    assert info == {"step": 4, "score": 0.9, "by": "probe_acc"}
    saved = _saved_weights(keeper.out_dir)
    assert saved, "no weights saved"
    for name, tensor in saved.items():
        assert torch.equal(tensor, snaps.at[4][name]), name
    # the weights did move after step 4, so the check above can fail
    assert any(not torch.equal(snaps.at[8][n], snaps.at[4][n]) for n in saved)
    assert (keeper.out_dir / "tokenizer_config.json").exists()  # a loadable model of its own
    assert mon.summary["stopped_by"] is None  # no patience: the job trains to the end


def test_patience_stops_and_restores_the_best_weights(tmp_path, tiny_model_dir):
    probe = ScriptedProbe([0.5, 0.8, 0.6, 0.5, 0.4, 0.3])
    keeper = BestKeeper(tmp_path / "models" / "sft_best", by="probe_acc")
    mon = KnowledgeMonitor(probe, every_steps=2, drop_threshold=0.9, keeper=keeper, patience=2,
                           out_path=tmp_path / "monitor" / "monitor.jsonl", job_name="sft")
    trainer, snaps = _train(tmp_path, tiny_model_dir, mon, max_steps=12)
    assert trainer.state.global_step == 6  # best at 2, no better at 4 and 6: stop
    assert mon.summary["stopped_by"] == "patience" and mon.summary["restored_step"] == 2
    final = trainer.model.state_dict()
    for name, tensor in _saved_weights(keeper.out_dir).items():
        assert torch.equal(final[name], snaps.at[2][name]), name


class _Hook(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((self.headers["Content-Type"], json.loads(body)))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    _Hook.received = []
    server = HTTPServer(("127.0.0.1", 0), _Hook)  # loopback only, any free port
    server.timeout = 5
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", _Hook.received
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_alert_reaches_a_webhook_and_a_command(tmp_path, webhook):
    url, received = webhook
    out = tmp_path / "alert.json"
    command = f"{sys.executable} -c \"import sys; open(r'{out}', 'w').write(sys.stdin.read())\""
    alert = Alert("sft", "knowledge_drop", 40, "sft: knowledge probe fell 0.2 below its peak")
    failed = send_alert(alert, AlertSinks(command=command, webhook=url))
    assert failed == []
    assert len(received) == 1
    content_type, body = received[0]
    assert content_type == "application/json"
    assert body["text"] == "[dtmerge] sft: knowledge probe fell 0.2 below its peak"  # Slack's key
    assert body["kind"] == "knowledge_drop" and body["step"] == 40 and body["job"] == "sft"
    assert json.loads(out.read_text())["text"] == body["text"]


def test_a_failing_channel_is_reported_not_raised(tmp_path):
    failed = send_alert(Alert("sft", "bias_ratio", 3, "x"),
                        AlertSinks(command="exit 3", webhook="http://127.0.0.1:9/none"))
    assert [f.split(":")[0] for f in failed] == ["command", "webhook"]


def test_monitor_alerts_on_the_bias_ratio_crossing_its_threshold(tmp_path, webhook):
    from types import SimpleNamespace

    url, received = webhook

    class Probe:
        def __len__(self):
            return 1

        def accuracy(self, model):
            return 0.5

    mon = KnowledgeMonitor(Probe(), every_steps=1, ratio_threshold=2.0, job_name="sub_0",
                           sinks=AlertSinks(webhook=url), out_path=tmp_path / "m.jsonl")
    # train loss 2.0 -> 1.0 while held-out loss 2.0 -> 1.8: ratio 5
    mon._heldout_loss = (lambda it: (lambda model: next(it)))(iter([2.0, 1.9, 1.8]))
    control = SimpleNamespace(should_training_stop=False)
    for step, loss in ((1, 2.0), (2, 1.8), (3, 1.0)):
        mon._last_loss = loss
        mon._measure(step, model=None)
        mon._check(control)
    kinds = [body["kind"] for _, body in received]
    assert kinds == ["bias_ratio"]
    assert "fell 5.00x as much as held-out loss (threshold 2)" in received[0][1]["text"]
    assert mon.records[-1]["alert"].startswith("sub_0: training loss fell")


def test_alert_tags_the_active_mlflow_run(tmp_path):
    mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    with mlflow.start_run() as active:
        failed = send_alert(Alert("sft", "knowledge_drop", 7, "sft: knowledge fell"),
                            AlertSinks(mlflow=True))
    assert failed == []
    tags = mlflow.get_run(active.info.run_id).data.tags
    assert tags["dtmerge.alert.knowledge_drop"] == "step 7: sft: knowledge fell"


def test_tradeoff_best_holds_the_weights_of_its_step_in_real_training(tmp_path, tiny_model_dir,
                                                                       monkeypatch):
    from dtmerge.evaluate.best_checkpoint import TradeoffKeeper

    # probed at steps 0, 2, 4, 6, 8; held-out loss scripted to fall, knowledge peaks at step 4
    losses = iter([2.0, 1.5, 1.02, 1.01, 1.00])
    monkeypatch.setattr(KnowledgeMonitor, "_heldout_loss", lambda self, model: next(losses))
    probe = ScriptedProbe([0.5, 0.6, 0.9, 0.7, 0.4])
    keeper = TradeoffKeeper(tmp_path / "models" / "sft_best", loss_margin=0.05)
    mon = KnowledgeMonitor(probe, every_steps=2, drop_threshold=0.3, keeper=keeper,
                           out_path=tmp_path / "monitor" / "monitor.jsonl", job_name="sft")
    _, snaps = _train(tmp_path, tiny_model_dir, mon)
    # steps 4, 6, 8 are within 5% of the final loss; step 4 keeps the most knowledge
    assert keeper.step == 4 and mon.summary["kept_step"] == 4 and "step 4" in mon.summary["kept_why"]
    saved = _saved_weights(keeper.out_dir)
    for name, tensor in saved.items():
        assert torch.equal(tensor, snaps.at[4][name]), name
    assert json.loads((keeper.out_dir / "best.json").read_text())["by"] == "tradeoff"
    assert not keeper.steps_dir.exists()
