"""CodecLM: tailored instruction data (encode, metadata pool, decode, Self-Rubrics,
Contrastive Filtering). See docs/generation.md and methods.md §1."""

from synthcodec.codeclm.config import CodecConfig
from synthcodec.codeclm.pipeline import generate

__all__ = ["CodecConfig", "generate"]
