"""Facts the dry-run plan uses when a model or data set is only a Hub id (no network here).

Model entries are the architecture fields of the models' published config.json files, enough
to build the model on the meta device and count its (and its LoRA adapters') parameters
exactly. Data set entries give the example count and an *assumed* mean length in tokens; the
plan says which numbers are assumptions.
"""

from __future__ import annotations

# Hub id -> transformers config fields (model_type + shapes).
KNOWN_MODELS: dict[str, dict] = {
    "meta-llama/Llama-2-7b-hf": dict(
        model_type="llama", vocab_size=32000, hidden_size=4096, intermediate_size=11008,
        num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
        max_position_embeddings=4096, tie_word_embeddings=False),
    "meta-llama/Llama-2-13b-hf": dict(
        model_type="llama", vocab_size=32000, hidden_size=5120, intermediate_size=13824,
        num_hidden_layers=40, num_attention_heads=40, num_key_value_heads=40,
        max_position_embeddings=4096, tie_word_embeddings=False),
    "mistralai/Mistral-7B-v0.1": dict(
        model_type="mistral", vocab_size=32000, hidden_size=4096, intermediate_size=14336,
        num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
        max_position_embeddings=32768, tie_word_embeddings=False),
    "google/gemma-3-270m": dict(
        model_type="gemma3_text", vocab_size=262144, hidden_size=640, intermediate_size=2048,
        num_hidden_layers=18, num_attention_heads=4, num_key_value_heads=1, head_dim=256,
        max_position_embeddings=32768, tie_word_embeddings=True),
    "HuggingFaceTB/SmolLM2-135M": dict(
        model_type="llama", vocab_size=49152, hidden_size=576, intermediate_size=1536,
        num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
        max_position_embeddings=8192, tie_word_embeddings=True),
}

DEFAULT_TOKENS_PER_EXAMPLE = 300

# Hub id -> (examples in the training split as used by dtmerge, assumed mean tokens per
# example after the chat template, where the numbers come from).
KNOWN_DATASETS: dict[str, tuple[int, int, str]] = {
    "allenai/tulu-v2-sft-mixture": (
        326_154, 450,
        "326,154 first turns (paper); ~450 tokens/example assumed from the mixture's "
        "composition (short FLAN/CoT items, long ShareGPT/science ones), not measured"),
    "tatsu-lab/alpaca": (52_002, 200, "52,002 examples; ~200 tokens/example assumed"),
    "yahma/alpaca-cleaned": (51_760, 200, "51,760 examples; ~200 tokens/example assumed"),
    "vicgalle/alpaca-gpt4": (52_002, 300, "52,002 examples; ~300 tokens/example assumed"),
    "GAIR/lima": (1_030, 600, "1,030 examples; ~600 tokens/example assumed"),
}

# Throughput assumptions printed beside every time estimate.
GPU_NAME = "A100 80GB"
GPU_PEAK_TFLOPS = 312.0  # bf16 dense peak
ASSUMED_MFU = 0.35
# Effective training throughput of one CPU core, from runs on an idle 2-core machine (fp32
# LoRA on SmolLM2-135M and Gemma-3-270M both came to ~0.1 TFLOP/s in total, 4*N*tokens/s).
# The same machine shared with other jobs (load ~7) gave ~10x less: see BENCHMARKS.md.
CPU_TFLOPS_PER_CORE = 0.05

# GPU kind (a substring of torch.cuda.get_device_name) -> (dense bf16/fp16 peak TFLOP/s, GiB).
# Used for the time estimate on the visible GPU; --throughput replaces it with a measured rate.
GPU_KINDS: dict[str, tuple[float, float]] = {
    "H200": (989.0, 141), "H100": (989.0, 80), "A100-SXM4-80GB": (312.0, 80),
    "A100 80GB": (312.0, 80), "A100": (312.0, 40), "L40S": (362.0, 48), "A10G": (125.0, 24),
    "L4": (121.0, 24), "RTX 4090": (165.0, 24), "RTX 3090": (71.0, 24), "V100": (125.0, 32),
    "T4": (65.0, 16),
}

# lm-eval task -> (test items, assumed forward tokens per item with every request of the item
# and no few-shot examples, lm-eval's default few-shot count). Item counts are the tasks' test
# splits; the token counts are assumptions, printed as such.
KNOWN_TASKS: dict[str, tuple[int, int, int]] = {
    "mmlu": (14_042, 4 * 120, 0), "arc_challenge": (1_172, 4 * 60, 0),
    "openbookqa": (500, 4 * 40, 0), "race": (1_045, 4 * 450, 0),
    "truthfulqa_mc2": (817, 8 * 60, 0), "gsm8k": (1_319, 150 + 256, 5),
    "bbh": (6_511, 250 + 256, 3), "humaneval": (164, 150 + 512, 0),
    "mbpp": (500, 100 + 512, 3), "ifeval": (541, 60 + 1280, 0),
}
