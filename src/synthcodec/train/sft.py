"""Supervised fine-tuning with LoRA on `transformers.Trainer`: instruction data in, a small
adapter directory out.

The Trainer does the optimizer loop, gradient accumulation over micro-batches (with the
loss averaged over the answer tokens of the whole optimizer step: it passes
`num_items_in_batch` to the model), gradient clipping, the device and bf16 autocast, and
seeding. Where this module keeps its own code, and why:

- `train.data.encode_messages` + `AnswerOnlyCollator`: answer-only labels for any chat
  template and any number of turns (trl's `SFTTrainer` masks prompts only for
  prompt/completion rows or templates with `{% generation %}` markers; trl is also not a
  dependency). The Trainer gets them as its dataset and data collator.
- the learning-rate schedule (`_lr_lambda`, passed to the Trainer with the AdamW optimizer):
  linear warmup, then linear decay to a tenth of the peak (CodecLM). The Trainer's
  `linear` schedule decays to zero.
- `_StepReporter`, a Trainer callback: one `StepProgress` per optimizer step (the CLI's
  progress line, the loss history in `synthcodec_train.json`) instead of the Trainer's
  tqdm bar and log dicts.
- `_publish`: the adapter directory appears atomically when training finishes, with the
  tokenizer and `synthcodec_train.json` beside peft's files; an interrupted run leaves
  nothing (the Trainer's own `output_dir` is a scratch directory, removed afterwards, with
  no checkpoints).

Model loading (base resolution, GGUF dequantizing, tokenizer, chat template) is
`synthcodec.llm.hfmodels`, shared with the `hf:` inference backend. Nothing here imports
torch at module import time: data loading and validation run without the `train` extra.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthcodec import __version__
from synthcodec.errors import UserError
from synthcodec.llm.hfmodels import (
    TRAIN_INFO,
    load_model_and_tokenizer,
    pick_device,
    require_train_extra,
    resolve_base,
)
from synthcodec.progress import StepProgress, clock
from synthcodec.train.data import (
    IGNORE_INDEX,
    AnswerOnlyCollator,
    encode_messages,
    examples_sha256,
    load_examples,
)

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


def default_batch_size(n_rows: int) -> int:
    """About MIN_STEPS_PER_EPOCH optimizer steps per epoch, a power of two, at most 64.

    200 rows -> 4, 500 -> 8, 2000 -> 32, 9k -> 64 (the papers: 2000 rows at 64, 9k at 128,
    which on a few hundred rows would leave a handful of steps in total).
    """
    target = max(1, n_rows // MIN_STEPS_PER_EPOCH)
    return min(MAX_BATCH, 1 << (target.bit_length() - 1))


def micro_batch_for(batch: int, wanted: int) -> int:
    """The largest divisor of `batch` that is at most `wanted`: the Trainer accumulates a
    whole number of equal micro-batches, so every optimizer step sees exactly `batch` rows."""
    wanted = max(1, min(wanted, batch))
    return next(m for m in range(wanted, 0, -1) if batch % m == 0)


# --- Training ------------------------------------------------------------------------


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


def summary(result: TrainResult) -> str:
    """What `synthcodec train` prints at the end (the experiment logs its first line)."""
    first = result.losses[0] if result.losses else float("nan")
    skipped = f" ({result.skipped} skipped)" if result.skipped else ""
    return (f"trained {result.output_dir}: {result.steps} steps on {result.n_rows} rows{skipped}, "
            f"{result.train_tokens} answer tokens, loss {first:.4f} -> {result.final_loss:.4f}, "
            f"{clock(result.seconds)}\n"
            f"serve it with: synthcodec answer BENCH --model hf:{result.output_dir} -o ANSWERS")


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


def _step_reporter(total: int, peak_lr: float, schedule: Callable[[int], float],
                   progress: ProgressFn | None) -> Any:
    """A TrainerCallback collecting each optimizer step's loss and reporting it."""
    from transformers import TrainerCallback

    class _StepReporter(TrainerCallback):
        def __init__(self) -> None:
            self.losses: list[float] = []
            self.started = time.monotonic()

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.started = time.monotonic()

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None,
                   **kwargs: Any) -> None:
            if not logs or "loss" not in logs:  # the end-of-training summary, not a step
                return
            step = state.global_step
            self.losses.append(float(logs["loss"]))
            if progress is not None:
                progress(StepProgress(step=step, total=total, loss=self.losses[-1],
                                      epoch=float(state.epoch or 0.0),
                                      lr=peak_lr * schedule(step - 1),  # the lr this step used
                                      elapsed=time.monotonic() - self.started))

    return _StepReporter()


def _trainer_device(device_name: str) -> None:
    """The Trainer trains on `cuda:0` (or the CPU); another index needs CUDA_VISIBLE_DEVICES."""
    if device_name.startswith("cuda:") and device_name != "cuda:0":
        raise UserError(f"--device {device_name}: training runs on one GPU, the first visible "
                        f"one; choose it with CUDA_VISIBLE_DEVICES={device_name[5:]} and "
                        "--device cuda")


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
    from peft import LoraConfig, get_peft_model
    from transformers import Trainer, TrainingArguments, set_seed
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    started = time.monotonic()
    set_seed(seed)
    device_name, dtype = pick_device(device)
    _trainer_device(device_name)
    say(f"loading {base_model.spec} ({base_model.path}) on {device_name}")
    model, tokenizer = load_model_and_tokenizer(base_model, device=device_name, dtype=dtype)
    context = getattr(model.config, "max_position_embeddings", None) or max_length
    max_len = min(max_length, int(context))

    # The answer-only labels, computed once: the counts below and skipping rows need them.
    encoded: list[dict[str, list[int]]] = []
    skipped = 0
    for ex in examples:
        ids, labels = encode_messages(tokenizer, ex.messages, max_len)
        if all(label == IGNORE_INDEX for label in labels):
            skipped += 1  # the prompt alone fills max_length: nothing left to learn from
            continue
        encoded.append({"input_ids": ids, "labels": labels})
    if not encoded:
        raise UserError(f"every row's prompt is longer than --max-length {max_len} tokens")
    if skipped:
        say(f"skipped {skipped} rows whose prompt fills --max-length {max_len}")
    n = len(encoded)
    train_tokens = sum(sum(1 for x in row["labels"] if x != IGNORE_INDEX) for row in encoded)

    on_cuda = device_name.startswith("cuda")
    batch = min(batch_size or default_batch_size(n), n)
    micro = micro_batch_for(batch, micro_batch_size or (8 if on_cuda else 4))
    steps_per_epoch = math.ceil(n / batch)
    epochs_value = float(epochs if epochs is not None else DEFAULT_EPOCHS)
    total = int(max_steps) if max_steps else max(1, math.ceil(epochs_value * steps_per_epoch))
    lr = float(learning_rate if learning_rate is not None else DEFAULT_LR)
    warmup = int(WARMUP_RATIO * total)
    schedule = _lr_lambda(total, warmup)

    torch.manual_seed(seed)  # LoRA's A matrices are initialized from this seed
    lora = LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=LORA_DROPOUT,
                      target_modules="all-linear", bias="none", task_type="CAUSAL_LM")
    with warnings.catch_warnings():  # deprecation chatter between transformers and peft
        warnings.simplefilter("ignore", FutureWarning)
        model = get_peft_model(model, lora)
    params = [p for p in model.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in params)
    optimizer = torch.optim.AdamW(params, lr=lr, betas=ADAM_BETAS, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
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
        "trainer": "transformers.Trainer",
    }
    say(f"{n} rows, {train_tokens} answer tokens; {total} steps (batch {batch} = "
        f"{batch // micro} x {micro}, {steps_per_epoch} steps/epoch), lr {lr:g}, "
        f"LoRA r={lora_r} ({n_trainable / 1e6:.2f}M trainable parameters)")

    reporter = _step_reporter(total, lr, schedule, progress)
    scratch = tempfile.mkdtemp(prefix="synthcodec-trainer-")
    try:
        args = TrainingArguments(
            output_dir=scratch, max_steps=total, per_device_train_batch_size=micro,
            gradient_accumulation_steps=batch // micro, learning_rate=lr,
            max_grad_norm=MAX_GRAD_NORM, logging_strategy="steps", logging_steps=1,
            save_strategy="no", report_to="none", disable_tqdm=True, seed=seed,
            data_seed=seed, use_cpu=not on_cuda, bf16=dtype == torch.bfloat16,
            remove_unused_columns=False, label_names=["labels"],
            dataloader_pin_memory=on_cuda)
        if on_cuda:
            _ = args.device
            args._n_gpu = 1  # one GPU, as before: never nn.DataParallel over all of them
        trainer = Trainer(model=model, args=args, train_dataset=encoded,
                          data_collator=AnswerOnlyCollator(tokenizer),
                          optimizers=(optimizer, scheduler), callbacks=[reporter])
        for noisy in (PrinterCallback, ProgressCallback):  # our progress line instead
            trainer.remove_callback(noisy)
        trainer.train()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    losses: list[float] = reporter.losses

    seconds = time.monotonic() - started
    info = {
        "format": 1,
        "synthcodec_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "base": base_model.to_json(),
        "data": {"path": str(Path(data_path).resolve()), "sha256": examples_sha256(examples),
                 "rows": len(examples), "used_rows": n, "skipped_rows": skipped,
                 "answer_tokens": train_tokens},
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
    import json

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
    for package in ("torch", "transformers", "peft", "accelerate", "gguf"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            pass
    return out

