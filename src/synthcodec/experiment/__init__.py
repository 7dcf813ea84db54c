"""One recipe that tests the papers' claim: build datasets, train one LoRA adapter on each,
answer a benchmark with each adapter, judge them pairwise, and write one report.

    [experiment]                 # synthcodec run experiment.toml
    dir = "runs/experiment"
    base = "local"
    [experiment.rate]            # AlpaGasus rating of a pool of rows
    data = "../shared/data/alpaca/random_9k.json"
    limit = 60
    [experiment.datasets.filtered]
    top = 24                     # or min_score = 4.5, or path = "kept.json"
    [experiment.datasets.random]
    random = "filtered"          # the same number of rows as `filtered`, at random
    [experiment.train]
    max_steps = 12
    [experiment.bench]
    path = "../shared/data/bench/vicuna_test_set.jsonl"
    [experiment.compare]
    judge = "local"
    # optional: lm-evaluation-harness tasks for the base and every adapter
    # benchmarks = ["mmlu", "bbh"]   + [experiment.benchmark_settings] limit/shots/data_dir

`recipe.py` parses the table (`Experiment`), `datasets.py` chooses each dataset's rows,
`steps.py` is one function per step, reusing the commands' own functions (`rate_file`,
`score_file`, `select_rows`, `train_lora`, `answer_file`, `compare_files`), `run.py` makes
them driver Plans over the experiment directory (one `run_plans` with the driver's ledger,
RUN/stages.json: a re-run skips a finished step with the same settings and inputs, a changed
one is redone with what depends on it) and `report.py` writes report.md from their results.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch's first import

from synthcodec.experiment.recipe import Experiment, describe  # noqa: E402
from synthcodec.experiment.run import run_experiment  # noqa: E402
from synthcodec.experiment.steps import Interrupted, compare_answers  # noqa: E402

__all__ = ["Experiment", "Interrupted", "compare_answers", "describe", "run_experiment"]
