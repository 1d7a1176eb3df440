"""Monitor probes draw validation items only when an item split is set, keyed exactly as the
evaluation keys items (a group's members as `leaf:index` under the group), so a `_best`
checkpoint chosen on the probe is never chosen on test items."""

from __future__ import annotations

import pytest

from tiny import build_tiny_tokenizer, write_mc_task

from dtmerge.evaluate.probe import build_probe, sample_task_items
from dtmerge.evaluate.split import ItemSplit

CITIES = ["paris", "london", "rome", "berlin"]


def _rows(n: int, tag: str) -> list[dict]:
    return [{"question": f"{tag} item {i}", "choices": CITIES, "answer": i % 4} for i in range(n)]


def _index(context: str) -> int:
    return int(context.split(" item ")[1].split("\n")[0])


def _drawn(items) -> set[int]:
    return {_index(ctx) for ctx, _, _ in items}


def test_without_a_split_the_probe_may_draw_any_item(tmp_path):
    root = write_mc_task(tmp_path / "tasks", "probe_mc", _rows(40, "mc"))
    items, _, _ = sample_task_items(["probe_mc"], [root], size=40, seed=0)
    assert _drawn(items) == set(range(40))


def test_with_a_split_the_probe_draws_exactly_the_validation_items(tmp_path):
    root = write_mc_task(tmp_path / "tasks", "probe_mc", _rows(40, "mc"))
    split = ItemSplit(0.3, seed=5)
    validation = {i for i in range(40) if split.part("probe_mc", i) == "validation"}
    assert 0 < len(validation) < 40  # both parts are populated: the check below can fail
    items, sources, _ = sample_task_items(["probe_mc"], [root], size=100, seed=0, split=split,
                                          eval_tasks=["probe_mc"])
    assert _drawn(items) == validation and set(sources) == {"probe_mc"}
    few, _, _ = sample_task_items(["probe_mc"], [root], size=4, seed=1, split=split,
                                  eval_tasks=["probe_mc"])
    assert len(few) == 4 and _drawn(few) <= validation


def test_a_group_members_items_are_split_under_the_group_as_the_evaluation_records_them(tmp_path):
    root = tmp_path / "tasks"
    write_mc_task(root, "member_a", _rows(30, "a"))
    write_mc_task(root, "member_b", _rows(30, "b"))
    (root / "both.yaml").write_text("group: both\ntask: [member_a, member_b]\n"
                                    "aggregate_metric_list:\n  - metric: acc\n"
                                    "metadata:\n  version: 1.0\n")
    split = ItemSplit(0.4, seed=2)
    items, sources, _ = sample_task_items(["member_a"], [root], size=100, split=split,
                                          eval_tasks=["both"])
    want = {i for i in range(30) if split.part("both", f"member_a:{i}") == "validation"}
    own = {i for i in range(30) if split.part("member_a", i) == "validation"}
    assert want != own  # the keying matters on these items
    assert _drawn(items) == want


def test_a_split_leaving_no_validation_item_is_a_clear_error(tmp_path):
    from dtmerge.errors import ConfigError

    root = write_mc_task(tmp_path / "tasks", "probe_mc", _rows(3, "mc"))
    with pytest.raises(ConfigError, match="validation items"):
        sample_task_items(["probe_mc"], [root], size=10, split=ItemSplit(1e-9),
                          eval_tasks=["probe_mc"])


def test_the_monitor_built_for_a_run_with_a_split_probes_validation_items_only(tmp_path, tiny_model_dir):
    from dtmerge.config import config_from_dict
    from dtmerge.evaluate.monitor import build_monitor
    from dtmerge.rundir import RunDir

    root = write_mc_task(tmp_path / "tasks", "probe_mc", _rows(40, "mc"))
    cfg = config_from_dict({
        "name": "p", "runs_dir": str(tmp_path / "runs"), "model": {"path": str(tiny_model_dir)},
        "data": {"path": "unused.jsonl"},
        "eval": {"tasks": ["probe_mc"], "include_path": [str(root)], "validation_fraction": 0.25,
                 "split_seed": 3},
        "monitor": {"enabled": True, "probe_tasks": ["probe_mc"], "probe_size": 40,
                    "best_by": "probe_acc", "keep_best": True}})
    tok = build_tiny_tokenizer()
    monitor = build_monitor(cfg, RunDir(cfg.run_dir), "sft", tokenizer=tok)
    split = ItemSplit(0.25, seed=3)
    validation = {i for i in range(40) if split.part("probe_mc", i) == "validation"}
    drawn = {_index(tok.decode(c, skip_special_tokens=True)) for c in monitor.probe.contexts}
    assert drawn == validation
    # the same probe built without the split would reach test items
    assert len(build_probe(["probe_mc"], [root], tok, size=40)) == 40 > len(validation)
