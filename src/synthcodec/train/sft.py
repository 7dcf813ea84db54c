"""Supervised fine-tuning with LoRA: instruction data in, a small adapter directory out.

Design choice: a plain PyTorch loop over a `peft` LoRA model, not `trl.SFTTrainer`.
trl's response-only loss needs either prompt/completion rows (single turn only) or a chat
template carrying `{% generation %}` markers (`assistant_only_loss`), which SmolLM2's and
most models' templates lack; its API also changes between minor versions and it pulls in
`datasets`. The loop here is about a hundred lines, masks the prompt for any chat template
and any number of turns (see `encode_messages`), reports every step to a callback, and
needs only torch + transformers + peft. For multi-GPU or very large runs, export the data
(`synthcodec select --format openai`) and use trl/axolotl directly.

Nothing here imports torch at module import time: data loading and validation run without
the `train` extra, and `MissingExtraError` names the extra when training is attempted.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from synthcodec import __version__
from synthcodec.errors import InputError, MissingExtraError, UserError
from synthcodec.io import iter_rows

TRAIN_INFO = "synthcodec_train.json"
IGNORE_INDEX = -100  # label value that cross-entropy skips: prompt tokens and padding

# --- Defaults, scaled from the papers (spec §2.3) -------------------------------------
# AlpaGasus-7B: 3 epochs, lr 2e-5, batch 128. CodecLM: AdamW betas (0.9, 0.95), lr decaying
# linearly to a tenth of its peak, batch 64, max length 2048.
DEFAULT_EPOCHS = 3
# The papers' 2e-5 / 1e-5 are for *full* fine-tuning of 7B/13B models. LoRA trains a
# low-rank update whose B matrix starts at zero, scaled by alpha/r, so it needs a learning
# rate about ten times larger to move as far in the same number of steps; 1e-4..3e-4 is
# the usual range for LoRA SFT (LoRA and QLoRA papers). 2e-4 is the middle of it.
DEFAULT_LR = 2e-4
ADAM_BETAS = (0.9, 0.95)  # CodecLM
LR_END_RATIO = 0.1  # CodecLM decays 1e-5 -> 1e-6
WARMUP_RATIO = 0.03  # Alpaca/AlpaGasus training scripts
MAX_BATCH = 64  # CodecLM's batch; AlpaGasus's 128 was for 52k rows
MIN_STEPS_PER_EPOCH = 32  # the papers take ~30-70 optimizer steps per epoch
LORA_DROPOUT = 0.05
MAX_GRAD_NORM = 1.0
FALLBACK_CHAT_TEMPLATE = (
    # Only for bases whose tokenizer has no chat template: plain ChatML, saved with the
    # adapter so serving uses exactly what training saw.
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def default_batch_size(n_rows: int) -> int:
    """About MIN_STEPS_PER_EPOCH optimizer steps per epoch, a power of two, at most 64.

    200 rows -> 4, 500 -> 8, 2000 -> 32, 9k -> 64 (the papers: 2000 rows at 64, 9k at 128,
    which on a few hundred rows would leave a handful of steps in total).
    """
    target = max(1, n_rows // MIN_STEPS_PER_EPOCH)
    return min(MAX_BATCH, 1 << (target.bit_length() - 1))


# --- Data ----------------------------------------------------------------------------

Message = dict[str, str]
ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant",
                  "assistant": "assistant", "chatgpt": "assistant", "bing": "assistant"}


@dataclass(frozen=True)
class TrainExample:
    """One conversation to learn from; the loss covers the assistant turns only."""

    messages: tuple[Message, ...]
    line: int


def prompt_text(instruction: str, input_text: str) -> str:
    """The user turn of an Alpaca row, the same as synthcodec.export.prompt_text."""
    return f"{instruction}\n\n{input_text}" if input_text.strip() else instruction


def row_to_messages(path: str | os.PathLike[str], line: int, row: dict[str, Any]) -> list[Message]:
    """Alpaca (`instruction`, `input`, `output`/`response`), OpenAI `messages`, or ShareGPT
    `conversations`, as chat messages. Raises InputError naming the file, line and field."""
    if "messages" in row:
        return _chat_messages(path, line, row["messages"], "messages")
    if "conversations" in row:
        return _chat_messages(path, line, row["conversations"], "conversations")
    instruction = _text_field(path, line, row, "instruction")
    out_field = "output" if "output" in row or "response" not in row else "response"
    output = _text_field(path, line, row, out_field)
    input_text = row.get("input")
    if input_text is None:
        input_text = ""
    if not isinstance(input_text, str):
        raise InputError(path, f"expected a string, got {type(input_text).__name__}",
                         line=line, field="input")
    messages: list[Message] = []
    system = row.get("system")
    if isinstance(system, str) and system.strip():
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": prompt_text(instruction, input_text)})
    messages.append({"role": "assistant", "content": output})
    return messages


def _text_field(path: Any, line: int, row: dict[str, Any], name: str) -> str:
    if name not in row or row[name] is None:
        hint = ("; each row needs 'instruction' and 'output' (Alpaca), or 'messages' "
                "(OpenAI chat format)")
        raise InputError(path, "missing" + hint, line=line, field=name)
    value = row[name]
    if not isinstance(value, str):
        raise InputError(path, f"expected a string, got {type(value).__name__}",
                         line=line, field=name)
    if not value.strip():
        raise InputError(path, "empty", line=line, field=name)
    return value


def _chat_messages(path: Any, line: int, value: Any, name: str) -> list[Message]:
    if not isinstance(value, list) or not value:
        raise InputError(path, "expected a non-empty list of messages", line=line, field=name)
    messages: list[Message] = []
    for i, m in enumerate(value):
        where = f"{name}[{i}]"
        if not isinstance(m, dict):
            raise InputError(path, f"expected an object, got {type(m).__name__}",
                             line=line, field=where)
        if "role" in m or "content" in m:
            role, content = m.get("role"), m.get("content")
            if role not in ROLES:
                raise InputError(path, f"role must be one of {', '.join(ROLES)}, got {role!r}",
                                 line=line, field=f"{where}.role")
        else:  # ShareGPT: {"from": "human"|"gpt"|"system", "value": ...}
            role, content = SHAREGPT_ROLES.get(str(m.get("from"))), m.get("value")
            if role is None:
                raise InputError(path, "expected 'role'/'content' (OpenAI) or 'from'/'value' "
                                 "(ShareGPT)", line=line, field=where)
        if not isinstance(content, str):
            raise InputError(path, "content must be a string", line=line,
                             field=f"{where}.content")
        messages.append({"role": role, "content": content})
    if not any(m["role"] == "assistant" and m["content"].strip() for m in messages):
        raise InputError(path, "no assistant message to learn from", line=line, field=name)
    return messages


def load_examples(path: str | os.PathLike[str]) -> list[TrainExample]:
    """Every row of a JSONL/JSON (or CSV/Parquet/HF dataset) file, validated before training."""
    examples = [TrainExample(tuple(row_to_messages(path, line, row)), line)
                for line, row in iter_rows(path)]
    if not examples:
        raise InputError(path, "the training data has no rows")
    return examples


def examples_sha256(examples: Sequence[TrainExample]) -> str:
    """A hash of the conversations themselves, independent of the file format."""
    digest = hashlib.sha256()
    for ex in examples:
        digest.update(json.dumps(ex.messages, sort_keys=True, ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()


# --- Tokenization and masking ----------------------------------------------------------


def render(tokenizer: Any, messages: Sequence[Message], *, add_generation_prompt: bool) -> str:
    """The chat template applied as text (no tokenization, so specials stay explicit)."""
    return tokenizer.apply_chat_template(
        [dict(m) for m in messages], tokenize=False, add_generation_prompt=add_generation_prompt)


def token_ids(tokenizer: Any, text: str) -> list[int]:
    """Token ids of already-templated text: the template wrote any BOS, so add none."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def encode_messages(tokenizer: Any, messages: Sequence[Message],
                    max_length: int | None = None) -> tuple[list[int], list[int]]:
    """(input_ids, labels) for one conversation; labels are IGNORE_INDEX outside the
    assistant turns.

    The conversation is cut into segments at each assistant turn: the text before it up to
    and including the generation prompt (as `add_generation_prompt=True` renders it at
    inference), then the turn itself (its content and end-of-turn token). Each segment is
    tokenized on its own, so the prompt tokens are exactly those the model sees when it is
    asked to answer, and only the answer tokens carry labels.
    """
    segments: list[tuple[str, bool]] = []
    done = ""
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prefix = render(tokenizer, messages[:i], add_generation_prompt=True)
        full = render(tokenizer, messages[: i + 1], add_generation_prompt=False)
        if not prefix.startswith(done) or not full.startswith(prefix):
            raise UserError(
                "this model's chat template rewrites earlier turns, so the answer tokens "
                "cannot be separated from the prompt; use single-turn rows")
        segments.append((prefix[len(done):], False))
        segments.append((full[len(prefix):], bool(message["content"].strip())))
        done = full
    ids: list[int] = []
    labels: list[int] = []
    for text, trainable in segments:
        if not text:
            continue
        seg = token_ids(tokenizer, text)
        ids.extend(seg)
        labels.extend(seg if trainable else [IGNORE_INDEX] * len(seg))
    if max_length is not None and len(ids) > max_length:
        ids, labels = ids[:max_length], labels[:max_length]
    return ids, labels


# --- Base models ---------------------------------------------------------------------


@dataclass(frozen=True)
class BaseModel:
    """What to load: `spec` as the user wrote it, `kind` gguf|hf, and the resolved path."""

    spec: str
    kind: str
    path: str

    def to_json(self) -> dict[str, str]:
        return asdict(self)


def resolve_base(spec: str) -> BaseModel:
    """`local` (the embedded SmolLM2 GGUF), a `.gguf` file, or a Hugging Face model dir."""
    spec = spec.strip()
    if spec in ("local", ""):
        from synthcodec.llm.llamacpp import default_gguf

        return BaseModel("local", "gguf", str(default_gguf()))
    raw = spec.removeprefix("gguf:").removeprefix("hf:")
    path = Path(raw).expanduser()
    if path.is_file() and path.suffix.lower() == ".gguf":
        return BaseModel(spec, "gguf", str(path.resolve()))
    if path.is_dir() and (path / "config.json").exists():
        return BaseModel(spec, "hf", str(path.resolve()))
    if path.is_dir() and (path / "adapter_config.json").exists():
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


def load_model_and_tokenizer(base: BaseModel, *, device: str, dtype: Any) -> tuple[Any, Any]:
    """The base model and its tokenizer, from local files only (never the network).

    A GGUF file is dequantized by transformers (needs the `gguf` package) to `dtype`.
    """
    import copy

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


def _load_model_and_tokenizer(base: BaseModel, *, dtype: Any) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"local_files_only": True}
    if base.kind == "gguf":
        if importlib_missing("gguf"):
            raise MissingExtraError("gguf", "train", "loading a GGUF model with transformers")
        source = str(Path(base.path).parent)
        kwargs["gguf_file"] = Path(base.path).name
    else:
        source = base.path
    quiet_transformers()
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        model_kwargs = dict(kwargs)
        if dtype is not torch.float32:
            model_kwargs["dtype"] = dtype
        model = AutoModelForCausalLM.from_pretrained(source, **model_kwargs)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load base model {base.spec}: {exc}") from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = FALLBACK_CHAT_TEMPLATE
    return model, tokenizer


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


def importlib_missing(package: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(package) is None


# --- Training ------------------------------------------------------------------------


@dataclass
class StepProgress:
    """Reported after every optimizer step."""

    step: int
    total: int
    loss: float
    epoch: float
    lr: float
    elapsed: float

    @property
    def eta(self) -> float:
        return self.elapsed / self.step * (self.total - self.step) if self.step else math.inf


@dataclass
class TrainResult:
    output_dir: Path
    losses: list[float]
    final_loss: float
    n_rows: int
    steps: int
    seconds: float
    skipped: int = 0
    train_tokens: int = 0
    config: dict[str, Any] = field(default_factory=dict)


ProgressFn = Callable[[StepProgress], None]
LogFn = Callable[[str], None]


def _lr_lambda(total: int, warmup: int) -> Callable[[int], float]:
    """Linear warmup, then linear decay to LR_END_RATIO of the peak at the last step."""

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        span = max(1, total - warmup - 1)
        frac = min(1.0, (step - warmup) / span)
        return 1.0 - (1.0 - LR_END_RATIO) * frac

    return f


def _check_output_dir(output_dir: Path) -> None:
    if output_dir.exists():
        if not output_dir.is_dir():
            raise UserError(f"{output_dir} exists and is not a directory")
        if any(output_dir.iterdir()) and not (output_dir / TRAIN_INFO).exists():
            raise UserError(f"{output_dir} is a non-empty directory that is not a synthcodec "
                            "adapter; pick another -o (an earlier adapter there is replaced)")


def train_lora(
    data_path: str | os.PathLike[str],
    base: str,
    output_dir: str | os.PathLike[str],
    *,
    epochs: float | None = None,
    max_steps: int | None = None,
    learning_rate: float | None = None,
    batch_size: int | None = None,
    micro_batch_size: int | None = None,
    lora_r: int = 16,
    lora_alpha: int = 32,
    max_length: int = 2048,
    seed: int = 0,
    device: str | None = None,
    progress: ProgressFn | None = None,
    log: LogFn | None = None,
) -> TrainResult:
    """Fine-tune `base` with LoRA on the rows of `data_path`; write the adapter to `output_dir`.

    `max_steps`, when given, overrides `epochs` (the data is cycled as needed). The output
    appears atomically: a finished directory holds the adapter, the tokenizer and
    `synthcodec_train.json`; an interrupted run leaves nothing behind.
    """
    say = log or (lambda _msg: None)
    output = Path(output_dir)
    _check_output_dir(output)
    examples = load_examples(data_path)  # validate all rows before any heavy import
    for name, value in (("epochs", epochs), ("max_steps", max_steps),
                        ("learning_rate", learning_rate), ("batch_size", batch_size),
                        ("micro_batch_size", micro_batch_size), ("lora_r", lora_r),
                        ("lora_alpha", lora_alpha), ("max_length", max_length)):
        if value is not None and value <= 0:
            raise UserError(f"{name} must be positive, got {value}")
    base_model = resolve_base(base)
    require_train_extra("training")

    import torch
    import torch.nn.functional as F
    from peft import LoraConfig, get_peft_model

    started = time.monotonic()
    random.seed(seed)
    torch.manual_seed(seed)
    device_name, dtype = pick_device(device)
    say(f"loading {base_model.spec} ({base_model.path}) on {device_name}")
    model, tokenizer = load_model_and_tokenizer(base_model, device=device_name, dtype=dtype)
    context = getattr(model.config, "max_position_embeddings", None) or max_length
    max_len = min(max_length, int(context))

    encoded: list[tuple[list[int], list[int]]] = []
    skipped = 0
    for ex in examples:
        ids, labels = encode_messages(tokenizer, ex.messages, max_len)
        if all(label == IGNORE_INDEX for label in labels):
            skipped += 1  # the prompt alone fills max_length: nothing left to learn from
            continue
        encoded.append((ids, labels))
    if not encoded:
        raise UserError(f"every row's prompt is longer than --max-length {max_len} tokens")
    if skipped:
        say(f"skipped {skipped} rows whose prompt fills --max-length {max_len}")
    n = len(encoded)
    train_tokens = sum(sum(1 for x in labels if x != IGNORE_INDEX) for _, labels in encoded)

    batch = min(batch_size or default_batch_size(n), n)
    micro = min(micro_batch_size or (8 if device_name.startswith("cuda") else 4), batch)
    steps_per_epoch = math.ceil(n / batch)
    epochs_value = float(epochs if epochs is not None else DEFAULT_EPOCHS)
    total = int(max_steps) if max_steps else max(1, math.ceil(epochs_value * steps_per_epoch))
    lr = float(learning_rate if learning_rate is not None else DEFAULT_LR)
    warmup = int(WARMUP_RATIO * total)

    torch.manual_seed(seed)  # LoRA's A matrices are initialized from this seed
    lora = LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=LORA_DROPOUT,
                      target_modules="all-linear", bias="none", task_type="CAUSAL_LM")
    with warnings.catch_warnings():  # deprecation chatter between transformers and peft
        warnings.simplefilter("ignore", FutureWarning)
        model = get_peft_model(model, lora)
    params = [p for p in model.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in params)
    optimizer = torch.optim.AdamW(params, lr=lr, betas=ADAM_BETAS, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(total, warmup))
    config = {
        "epochs": None if max_steps else epochs_value, "max_steps": max_steps, "steps": total,
        "steps_per_epoch": steps_per_epoch, "learning_rate": lr, "lr_schedule":
        f"linear warmup {warmup} steps, linear decay to {LR_END_RATIO:g}x",
        "batch_size": batch, "micro_batch_size": micro, "optimizer": "AdamW",
        "betas": list(ADAM_BETAS), "weight_decay": 0.0, "max_grad_norm": MAX_GRAD_NORM,
        "lora_r": lora_r, "lora_alpha": lora_alpha, "lora_dropout": LORA_DROPOUT,
        "target_modules": "all-linear", "max_length": max_len, "seed": seed,
        "device": device_name, "dtype": str(dtype).removeprefix("torch."),
        "trainable_parameters": n_trainable, "loss": "assistant tokens only",
    }
    say(f"{n} rows, {train_tokens} answer tokens; {total} steps (batch {batch}, "
        f"{steps_per_epoch} steps/epoch), lr {lr:g}, LoRA r={lora_r} "
        f"({n_trainable / 1e6:.2f}M trainable parameters)")

    pad_id = tokenizer.pad_token_id
    rng = random.Random(seed)
    order: list[int] = []
    losses: list[float] = []
    model.train()
    loop_started = time.monotonic()
    for step in range(total):
        picked: list[int] = []
        while len(picked) < batch:
            if not order:
                order = list(range(n))
                rng.shuffle(order)
            picked.append(order.pop())
        n_tok = sum(sum(1 for x in encoded[i][1] if x != IGNORE_INDEX) for i in picked)
        # Longest first inside a step so micro-batches of similar length pad less.
        picked.sort(key=lambda i: -len(encoded[i][0]))
        optimizer.zero_grad(set_to_none=True)
        loss_sum = 0.0
        for start in range(0, len(picked), micro):
            rows = [encoded[i] for i in picked[start:start + micro]]
            width = max(len(ids) for ids, _ in rows)
            input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
            labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
            attention = torch.zeros((len(rows), width), dtype=torch.long)
            for r, (ids, labs) in enumerate(rows):
                input_ids[r, : len(ids)] = torch.tensor(ids)
                labels[r, : len(labs)] = torch.tensor(labs)
                attention[r, : len(ids)] = 1
            input_ids, labels, attention = (t.to(device_name) for t in (input_ids, labels,
                                                                        attention))
            logits = model(input_ids=input_ids, attention_mask=attention).logits
            # Token-weighted over the whole step: every answer token counts the same,
            # however the step is split into micro-batches.
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)).float(),
                                   labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX,
                                   reduction="sum")
            (loss / n_tok).backward()
            loss_sum += float(loss.detach())
            del logits, loss
        torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
        current_lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        losses.append(loss_sum / n_tok)
        if progress is not None:
            progress(StepProgress(step=step + 1, total=total, loss=losses[-1],
                                  epoch=(step + 1) / steps_per_epoch, lr=current_lr,
                                  elapsed=time.monotonic() - loop_started))

    seconds = time.monotonic() - started
    data_hash = examples_sha256(examples)
    info = {
        "format": 1,
        "synthcodec_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "base": base_model.to_json(),
        "data": {"path": str(Path(data_path).resolve()), "sha256": data_hash, "rows": len(examples),
                 "used_rows": n, "skipped_rows": skipped, "answer_tokens": train_tokens},
        "config": config,
        "result": {"steps": total, "losses": losses, "final_loss": losses[-1],
                   "seconds": round(seconds, 3)},
        "versions": _versions(),
    }
    _publish(output, model, tokenizer, info)
    say(f"saved the adapter to {output}")
    return TrainResult(output_dir=output, losses=losses, final_loss=losses[-1],
                       n_rows=len(examples), steps=total, seconds=seconds, skipped=skipped,
                       train_tokens=train_tokens, config=config)


def _publish(output: Path, model: Any, tokenizer: Any, info: dict[str, Any]) -> None:
    """Write everything into a temp dir beside `output`, then swap it in."""
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".partial", dir=output.parent))
    try:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        (tmp / TRAIN_INFO).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n",
                                      encoding="utf-8")
        if output.exists():
            _check_output_dir(output)
            old = output.with_name(f".{output.name}.old-{os.getpid()}")
            os.replace(output, old)
            os.replace(tmp, output)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in ("torch", "transformers", "peft", "gguf"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            pass
    return out


def read_train_info(adapter_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The `synthcodec_train.json` of an adapter directory, or None."""
    path = Path(adapter_dir) / TRAIN_INFO
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} is unreadable: {exc}") from exc
