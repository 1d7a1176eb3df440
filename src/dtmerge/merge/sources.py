"""The inputs of a merge: full model directories and LoRA adapters over the same base.

Every source answers one question per base tensor and row block: "what is your weight here?"
(`FullModelSource.read`) or "what is your update here?" (`LoraAdapterSource.delta`), so the
engine never holds more than one block per model. LoRA updates are computed exactly in weight
space, delta = scaling * B @ A, the same product PEFT's `merge_and_unload` adds to the weight.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from dtmerge.errors import MergeError
from dtmerge.merge.tensor_io import SafetensorsReader, TensorInfo, read_header

# Names transformers gives the input embedding that an absent, tied `lm_head.weight` reuses.
_EMBED_SUFFIXES = ("embed_tokens.weight", "wte.weight", "word_embeddings.weight",
                   "embed_in.weight", "tok_embeddings.weight")


def _load_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise MergeError(f"{path}: cannot read JSON ({err})") from None


class FullModelSource:
    """A Hugging Face model directory with safetensors weights (one file or an index)."""

    kind = "full"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_dir():
            raise MergeError(f"model '{self.path}' is not a directory")
        if not (self.path / "config.json").is_file():
            raise MergeError(f"model '{self.path}' has no config.json: not a model directory "
                             "(a LoRA adapter needs adapter_config.json)")
        self.config = _load_json(self.path / "config.json")
        index = self.path / "model.safetensors.index.json"
        if index.is_file():
            names = sorted(set(_load_json(index)["weight_map"].values()))
            files = [self.path / n for n in names]
        else:
            files = sorted(self.path.glob("*.safetensors"))
        if not files:
            has_bin = any(self.path.glob("*.bin"))
            hint = (" (it has .bin weights: load and save_pretrained it once to convert)"
                    if has_bin else "")
            raise MergeError(f"model '{self.path}' has no safetensors weights{hint}")
        self.reader = SafetensorsReader(files)
        self.aliases: dict[str, str] = {}

    def names(self) -> list[str]:
        """Tensor names in file order (sequential reads)."""
        return sorted(self.reader.infos, key=lambda n: (str(self.reader.infos[n].file),
                                                         self.reader.infos[n].start))

    def resolve(self, name: str) -> str | None:
        """The stored tensor holding `name`: itself, or the input embedding for a tied lm_head."""
        if name in self.reader.infos:
            return name
        if name.endswith("lm_head.weight"):
            for other in self.reader.infos:
                if other.endswith(_EMBED_SUFFIXES):
                    return other
        return None

    def map_block(self, name: str, rows: tuple[int, int] | None = None):
        return self.reader.map_block(self.resolve(name), rows)

    def info(self, name: str) -> TensorInfo | None:
        stored = self.resolve(name)
        return self.reader.infos[stored] if stored else None

    def read(self, name: str, rows: tuple[int, int] | None = None,
             out: torch.Tensor | None = None) -> torch.Tensor:
        return self.reader.read(self.resolve(name), rows, out)

    def close(self) -> None:
        self.reader.close()


@dataclass
class LoraModule:
    """One adapted weight: delta = scaling * B @ A (transposed for fan_in_fan_out layers)."""

    A: torch.Tensor  # (r, in)
    B: torch.Tensor  # (out, r)
    scaling: float
    fan_in_fan_out: bool

    @property
    def rank(self) -> int:
        return self.A.shape[0]

    def delta(self, rows: tuple[int, int] | None = None) -> torch.Tensor:
        """Rows [start, end) of the weight update, in float32."""
        if self.fan_in_fan_out:  # weight is (in, out): delta = (B A)^T
            a = self.A if rows is None else self.A[:, rows[0]:rows[1]]
            return (self.B @ a).T.mul_(self.scaling)
        b = self.B if rows is None else self.B[rows[0]:rows[1]]
        return (b @ self.A).mul_(self.scaling)

    def delta_at(self, positions: torch.Tensor) -> torch.Tensor:
        """The update at flat positions of the weight (a sample for TIES' threshold)."""
        width = self.B.shape[0] if self.fan_in_fan_out else self.A.shape[1]
        rows, cols = positions // width, positions % width
        if self.fan_in_fan_out:  # weight[i, j] = (B A)[j, i]
            rows, cols = cols, rows
        return (self.B[rows] * self.A[:, cols].T).sum(1).mul_(self.scaling)


# adapter_config keys whose non-default value changes the update in a way we cannot compute
# from A and B alone; each is rejected with its reason.
_UNSUPPORTED = {
    "use_dora": "DoRA rescales the weight by a learned magnitude (not W + scale*B@A)",
    "lora_bias": "a LoRA bias term on lora_B also changes the layer bias",
    "modules_to_save": "modules_to_save replace whole modules (not a low-rank update)",
    "trainable_token_indices": "trainable tokens replace embedding rows",
    "layer_replication": "layer replication changes the model structure",
    "target_parameters": "LoRA on nn.Parameter targets (e.g. MoE experts) is not handled",
    "megatron_config": "Megatron-parallel LoRA layers are not handled",
    "alora_invocation_tokens": "activated LoRA applies only after invocation tokens",
    "use_qalora": "QA-LoRA pools inputs before the update",
    "use_bdlora": "block-diagonal LoRA is not handled",
    "velora_config": "VeLoRA is not handled",
    "monteclora_config": "MonteCLoRA is not handled",
    "arrow_config": "Arrow routing mixes adapters at inference time",
    "kasa_config": "KaSA changes the update form",
}
_BASE_CHANGING_INITS = ("pissa", "olora", "corda", "loftq")
_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<ab>[AB])\.weight$")


class LoraAdapterSource:
    """A PEFT LoRA adapter directory over the merge's base model."""

    kind = "lora"

    def __init__(self, path: str | Path, base: FullModelSource):
        self.path = Path(path)
        cfg = self.config = _load_json(self.path / "adapter_config.json")
        name = str(self.path)
        if cfg.get("peft_type", "LORA") != "LORA":
            raise MergeError(f"adapter '{name}' is {cfg.get('peft_type')}, not LoRA: only LoRA "
                             "adapters can be merged exactly")
        for key, reason in _UNSUPPORTED.items():
            if cfg.get(key):
                raise MergeError(f"adapter '{name}' sets {key}={cfg[key]!r}: {reason}, so its "
                                 "update cannot be merged exactly. Merge it with PEFT's "
                                 "merge_and_unload() first and pass the full model instead.")
        if cfg.get("bias", "none") != "none":
            raise MergeError(f"adapter '{name}' trains biases (bias={cfg['bias']!r}); only "
                             "bias='none' adapters are merged. Fold it into a full model first.")
        init = cfg.get("init_lora_weights", True)
        if isinstance(init, str) and init.lower().startswith(_BASE_CHANGING_INITS):
            raise MergeError(f"adapter '{name}' uses init_lora_weights={init!r}, which changes "
                             "the base weights; convert it to a plain LoRA on save "
                             "(path_initial_model_for_weight_conversion) first")
        weights = self.path / "adapter_model.safetensors"
        if not weights.is_file():
            raise MergeError(f"adapter '{name}' has no adapter_model.safetensors")
        self.modules = self._load_modules(weights, base)

    def _load_modules(self, weights: Path, base: FullModelSource) -> dict[str, LoraModule]:
        cfg, name = self.config, str(self.path)
        infos, _ = read_header(weights)
        reader = SafetensorsReader([weights])
        pairs: dict[str, dict[str, torch.Tensor]] = {}
        for key in infos:
            m = _KEY.match(key)
            if not m:
                raise MergeError(f"adapter '{name}': tensor '{key}' is not a LoRA A/B weight "
                                 "(embedding, conv or extra trainable modules are not handled)")
            pairs.setdefault(m["module"], {})[m["ab"]] = reader.read(key).float()
        reader.close()
        from peft.utils.other import get_pattern_key  # PEFT's own rank/alpha pattern matching

        modules = {}
        for module, ab in pairs.items():
            if set(ab) != {"A", "B"}:
                raise MergeError(f"adapter '{name}': module '{module}' lacks lora_A or lora_B")
            target = f"{module}.weight"
            info = base.reader.infos.get(target)
            if info is None and base.resolve(target):
                raise MergeError(f"adapter '{name}' adapts '{module}', which the base ties to its "
                                 "input embeddings; fold it into a full model first")
            if info is None:
                raise MergeError(f"adapter '{name}': module '{module}' maps to '{target}', which "
                                 f"the base model {base.path} does not have")
            A, B = ab["A"], ab["B"]
            if A.dim() != 2 or B.dim() != 2 or A.shape[0] != B.shape[1]:
                raise MergeError(f"adapter '{name}': '{module}' has A {tuple(A.shape)} and "
                                 f"B {tuple(B.shape)}, not a rank-r pair")
            fan = bool(cfg.get("fan_in_fan_out", False))
            shape = (A.shape[1], B.shape[0]) if fan else (B.shape[0], A.shape[1])
            if tuple(info.shape) != shape:
                raise MergeError(f"adapter '{name}': update of '{target}' would be {shape} but "
                                 f"the base tensor is {tuple(info.shape)}")
            r_key = get_pattern_key((cfg.get("rank_pattern") or {}).keys(), module)
            r_cfg = (cfg.get("rank_pattern") or {}).get(r_key, cfg.get("r", 8))
            a_key = get_pattern_key((cfg.get("alpha_pattern") or {}).keys(), module)
            alpha = (cfg.get("alpha_pattern") or {}).get(a_key, cfg.get("lora_alpha", 8))
            if int(r_cfg) != A.shape[0]:
                raise MergeError(f"adapter '{name}': '{module}' has rank {A.shape[0]} but its "
                                 f"config says r={r_cfg}; the scaling would be wrong")
            r = A.shape[0]
            scaling = alpha / math.sqrt(r) if cfg.get("use_rslora") else alpha / r
            modules[target] = LoraModule(A, B, float(scaling), fan)
        return modules

    def delta(self, name: str, rows: tuple[int, int] | None = None) -> torch.Tensor | None:
        """The update of base tensor `name` (rows [start, end)), or None if not adapted."""
        module = self.modules.get(name)
        return None if module is None else module.delta(rows)

    def close(self) -> None:
        pass


def open_source(path: str | Path, base: FullModelSource):
    """A full model or a LoRA adapter, by what the directory holds."""
    p = Path(path)
    if not p.exists():
        raise MergeError(f"model '{p}' does not exist")
    if (p / "adapter_config.json").is_file():
        return LoraAdapterSource(p, base)
    return FullModelSource(p)
