"""Fine-tune a target model on synthcodec data (LoRA SFT). Needs the `train` extra.

Importing this package is cheap: torch, transformers and peft load only when training runs.
"""

from synthcodec.llm.hfmodels import TRAIN_INFO, read_train_info, resolve_base
from synthcodec.progress import StepProgress
from synthcodec.train.data import encode_messages, load_examples
from synthcodec.train.sft import TrainResult, default_batch_size, train_lora

__all__ = [
    "TRAIN_INFO",
    "StepProgress",
    "TrainResult",
    "default_batch_size",
    "encode_messages",
    "load_examples",
    "read_train_info",
    "resolve_base",
    "train_lora",
]
