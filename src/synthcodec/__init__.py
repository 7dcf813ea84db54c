"""synthcodec: tailored instruction-tuning data, LLM-rated filtering, and pairwise evaluation."""

__version__ = "0.1.0"
