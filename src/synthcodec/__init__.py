"""synthcodec: tailored instruction-tuning data, LLM-rated filtering, and pairwise evaluation.

The Python API (`synthcodec.rate`, `score`, `select`, `complete`, `answer`, `compare`,
`generate`, `judge_check`,
`train`, their `a`-prefixed async variants, and `FakeBackend`) lives in synthcodec.api and
is loaded on first use, so `import synthcodec` and the CLI's `--help` stay fast.

The library prints nothing: its notices (a download starting, a server that rejects
response_format, ...) go to the `logging` logger "synthcodec", silent unless the caller
configures logging; the CLI shows them on stderr.
"""

import logging
from typing import Any

__version__ = "0.1.0"

logging.getLogger("synthcodec").addHandler(logging.NullHandler())

_API = {"complete", "rate", "score", "select", "answer", "compare", "generate", "train",
        "judge_check", "acomplete", "arate", "ascore", "aselect", "aanswer", "acompare",
        "agenerate", "atrain",
        "RunResult", "Selected", "Generated", "Comparison"}


def __getattr__(name: str) -> Any:
    if name in _API:
        from synthcodec import api

        return getattr(api, name)
    if name == "FakeBackend":
        from synthcodec.llm.fake import FakeBackend

        return FakeBackend
    raise AttributeError(f"module 'synthcodec' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API, "FakeBackend"])
