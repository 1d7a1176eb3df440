"""Loading base models and tokenizers: local directories, Hub ids, the Alpaca template.

Every stage resolves the base model through `resolve_model_path`, so a GGUF file or a Hub id
becomes a local Hugging Face directory in one place.
"""

from __future__ import annotations

from pathlib import Path

from dtmerge.config import ModelConfig
from dtmerge.errors import ModelError
from dtmerge.models.locate import is_gguf, is_local, offline

# The paper trains with the Alpaca prompt; a base model without a chat template gets it as a
# Jinja chat template so TRL's conversational prompt/completion path applies unchanged.
# The system turn (if any) replaces the default preamble.
ALPACA_CHAT_TEMPLATE = (
    "{% set ns = namespace(system='Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.') %}"
    "{% for m in messages %}{% if m['role'] == 'system' %}{% set ns.system = m['content'] %}"
    "{% endif %}{% endfor %}"
    "{{ ns.system }}"
    "{% for m in messages %}"
    "{% if m['role'] == 'user' %}{{ '\\n\\n### Instruction:\\n' + m['content'] }}"
    "{% elif m['role'] == 'assistant' %}{{ '\\n\\n### Response:\\n' + m['content'] + eos_token }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '\\n\\n### Response:\\n' }}{% endif %}"
)


def resolve_model_path(cfg: ModelConfig) -> str:
    """A local directory (or Hub id) that `from_pretrained` accepts.

    GGUF inputs are converted once into a cached Hugging Face directory.
    """
    path = cfg.path
    if is_gguf(cfg):
        from dtmerge.models.gguf import convert_gguf_cached

        return str(convert_gguf_cached(path, cfg.gguf_file))
    if is_local(path):
        p = Path(path).expanduser()
        if not p.exists():
            raise ModelError(f"model.path '{path}' does not exist: give a model directory or a Hub id")
        if not (p / "config.json").exists():
            raise ModelError(
                f"model.path '{path}' has no config.json: it is not a Hugging Face model directory"
            )
        return str(p)
    return path  # a Hub id; loading reports a clear error when offline


def pick_dtype(name: str):
    """torch dtype for `model.dtype`: auto = fp32 on CPU, bf16 on GPUs that have it, else fp16.

    Raises:
        ModelError: bfloat16 asked for on a GPU without bf16 support (pre-Ampere).
    """
    import torch

    if name == "bfloat16" and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        raise ModelError("model.dtype=bfloat16 but this GPU has no bf16 support: use float16 or auto")
    if name != "auto":
        return getattr(torch, name)
    if torch.cuda.is_available():
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def load_tokenizer(cfg: ModelConfig, template: str = "auto"):
    from transformers import AutoTokenizer

    src = cfg.tokenizer or resolve_model_path(cfg)
    try:
        tok = AutoTokenizer.from_pretrained(src, revision=cfg.revision,
                                            trust_remote_code=cfg.trust_remote_code)
    except OSError as err:
        raise ModelError(f"cannot load tokenizer from '{src}': {err}") from None
    choice = cfg.chat_template if template == "auto" else template
    if choice == "alpaca" or (choice == "auto" and not tok.chat_template):
        tok.chat_template = ALPACA_CHAT_TEMPLATE
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(cfg: ModelConfig, path: str | None = None, device: str | None = None):
    """Load a causal LM with the configured dtype (fp32 on CPU, bf16/fp16 on GPU)."""
    from transformers import AutoModelForCausalLM

    src = path or resolve_model_path(cfg)
    kwargs = dict(dtype=pick_dtype(cfg.dtype), revision=cfg.revision,
                  trust_remote_code=cfg.trust_remote_code)
    if cfg.load_in_4bit:
        kwargs["quantization_config"] = _bnb_config()
    try:
        model = AutoModelForCausalLM.from_pretrained(src, **kwargs)
    except OSError as err:
        hint = " (HF_HUB_OFFLINE=1: Hub ids need a network and a cache)" if offline() else ""
        raise ModelError(f"cannot load model '{src}'{hint}: {err}") from None
    if device:
        model.to(device)
    return model


def _bnb_config():
    import torch

    if not torch.cuda.is_available():
        raise ModelError("model.load_in_4bit (QLoRA) needs a CUDA GPU; none is available")
    try:
        from transformers import BitsAndBytesConfig
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ModelError("model.load_in_4bit needs bitsandbytes: pip install bitsandbytes") from None
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                              bnb_4bit_compute_dtype=pick_dtype("auto"))
