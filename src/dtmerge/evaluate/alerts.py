"""Deliver the training monitor's alerts to people: terminal, a command, a webhook, MLflow.

An alert must never break the training it reports on: every channel is bounded by a timeout
and a failing channel is logged and skipped. The webhook body is JSON with a "text" key, the
shape Slack, Mattermost and Discord's Slack-compatible endpoints accept, plus the details.
Written with the standard library (urllib, subprocess): the only thing to send is one small
JSON POST or one command.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import urllib.request
from dataclasses import asdict, dataclass

log = logging.getLogger("dtmerge.monitor")

TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Alert:
    """One alert: which job, what happened ("knowledge_drop" or "bias_ratio"), when, and the
    sentence a person reads."""

    job: str
    kind: str
    step: int
    text: str

    def payload(self) -> dict:
        return {**asdict(self), "text": f"[dtmerge] {self.text}"}


@dataclass(frozen=True)
class AlertSinks:
    """Where alerts go besides the terminal (None: that channel is off)."""

    command: str | None = None  # run through the shell; the alert is in $DTM_ALERT_* and stdin
    webhook: str | None = None  # http(s) URL receiving a JSON POST
    mlflow: bool = False  # tag the active MLflow run (the job's training run)


def _to_terminal(alert: Alert) -> None:
    log.warning(alert.text)
    print(f"ALERT {alert.job} step {alert.step}: {alert.text}", file=sys.stderr, flush=True)


def _to_command(alert: Alert, command: str) -> None:
    env = dict(os.environ, DTM_ALERT_JOB=alert.job, DTM_ALERT_KIND=alert.kind,
               DTM_ALERT_STEP=str(alert.step), DTM_ALERT_TEXT=alert.text)
    done = subprocess.run(command, shell=True, input=json.dumps(alert.payload()), text=True,
                          env=env, capture_output=True, timeout=TIMEOUT_S)
    if done.returncode != 0:
        raise RuntimeError(f"exit {done.returncode}: {done.stderr.strip()[-200:]}")


def _to_webhook(alert: Alert, url: str) -> None:
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an http(s) URL: {url!r}")
    req = urllib.request.Request(url, data=json.dumps(alert.payload()).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:  # noqa: S310 (scheme checked)
        resp.read()


def _to_mlflow(alert: Alert) -> None:
    import mlflow

    if mlflow.active_run() is None:
        return  # not tracking this job live: the run report carries the alert instead
    mlflow.set_tag(f"dtmerge.alert.{alert.kind}", f"step {alert.step}: {alert.text}"[:5000])


def send_alert(alert: Alert, sinks: AlertSinks) -> list[str]:
    """Send `alert` to the terminal and every configured sink.

    Returns:
        The channels that failed, each as "<channel>: <reason>" (also logged); empty when all
        were delivered.
    """
    _to_terminal(alert)
    channels = []
    if sinks.command:
        channels.append(("command", lambda: _to_command(alert, sinks.command)))
    if sinks.webhook:
        channels.append(("webhook", lambda: _to_webhook(alert, sinks.webhook)))
    if sinks.mlflow:
        channels.append(("mlflow", lambda: _to_mlflow(alert)))
    failed = []
    for name, deliver in channels:
        try:
            deliver()
        except Exception as err:  # an alert channel must never stop training
            failed.append(f"{name}: {type(err).__name__}: {err}")
            log.warning("alert not delivered by %s: %s", name, err)
    return failed
