"""Models: where they live (locate), converting GGUF files once (gguf), loading (load)."""

from dtmerge.models.load import (ALPACA_CHAT_TEMPLATE, load_model, load_tokenizer, pick_dtype,
                                 resolve_model_path)
from dtmerge.models.locate import is_gguf, is_hub_id, is_local, offline

__all__ = ["ALPACA_CHAT_TEMPLATE", "is_gguf", "is_hub_id", "is_local", "load_model", "load_tokenizer",
           "offline", "pick_dtype", "resolve_model_path"]
