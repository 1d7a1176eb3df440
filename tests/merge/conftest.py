"""Tiny random Llama models and PEFT adapters, built inside the tests."""

from __future__ import annotations

import pytest

from merge_zoo import make_base, make_finetuned, make_lora


@pytest.fixture(scope="session")
def zoo(tmp_path_factory):
    """A base model, three full fine-tunes of it and three LoRA adapters (ranks 4, 4, 8)."""
    root = tmp_path_factory.mktemp("zoo")
    base = make_base(root / "base")
    return {
        "root": root,
        "base": base,
        "full": [make_finetuned(base, root / f"full_{k}", seed=10 + k) for k in range(3)],
        "lora": [make_lora(base, root / f"lora_{k}", seed=20 + k, r=r)
                 for k, r in enumerate([4, 4, 8])],
    }
