"""Tiny lm-evaluation-harness tasks made on the spot: MMLU-style multiple choice, BBH-style
generation and a code task marked unsafe, each a task YAML beside its JSONL data (lm_eval's
`dataset_path: json` + `data_files`), for `synthcodec benchmark --data-dir DIR`."""

from __future__ import annotations

import json
from pathlib import Path

MMLU_ROWS = [
    ("What is 2 + 2?", ["3", "4", "5", "6"], 1),
    ("Which planet is known as the Red Planet?", ["Venus", "Jupiter", "Mars", "Saturn"], 2),
    ("What is the capital of France?", ["Paris", "Rome", "Berlin", "Madrid"], 0),
    ("Which gas do plants take in from the air?", ["Oxygen", "Nitrogen", "Helium",
                                                   "Carbon dioxide"], 3),
    ("How many legs does a spider have?", ["6", "8", "10", "4"], 1),
    ("What color is the sky on a clear day?", ["Blue", "Green", "Red", "Yellow"], 0),
]
BBH_ROWS = [
    ("not ( True ) and ( True ) is", "False"),
    ("True and not not ( not False ) is", "True"),
    ("not True or ( False and True ) is", "False"),
    ("True or False and not True is", "True"),
]

MMLU_YAML = """\
task: mini_mmlu
dataset_path: json
dataset_kwargs:
  data_files:
    test: mini_mmlu.jsonl
test_split: test
output_type: multiple_choice
doc_to_text: "{{question.strip()}}\\nA. {{choices[0]}}\\nB. {{choices[1]}}\\nC. {{choices[2]}}\\nD. {{choices[3]}}\\nAnswer:"
doc_to_choice: ["A", "B", "C", "D"]
doc_to_target: answer
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""

BBH_YAML = """\
task: mini_bbh
dataset_path: json
dataset_kwargs:
  data_files:
    test: mini_bbh.jsonl
test_split: test
output_type: generate_until
doc_to_text: "Evaluate the result of a random Boolean expression.\\n\\nQ: {{input}}\\nA:"
doc_to_target: "{{target}}"
generation_kwargs:
  until: ["\\n", "Q:"]
  do_sample: false
  max_gen_toks: 8
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
    ignore_case: true
    ignore_punctuation: true
filter_list:
  - name: strict-match
    filter:
      - function: remove_whitespace
      - function: take_first
metadata:
  version: 2.0
"""

CODE_YAML = """\
task: mini_code
dataset_path: json
dataset_kwargs:
  data_files:
    test: mini_bbh.jsonl
test_split: test
unsafe_code: true
output_type: generate_until
doc_to_text: "{{input}}"
doc_to_target: "{{target}}"
metric_list:
  - metric: exact_match
metadata:
  version: 1.0
"""


def write_tasks(root: Path, *, code: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "mini_mmlu.yaml").write_text(MMLU_YAML, encoding="utf-8")
    (root / "mini_mmlu.jsonl").write_text("".join(
        json.dumps({"question": q, "choices": c, "answer": a}) + "\n" for q, c, a in MMLU_ROWS),
        encoding="utf-8")
    (root / "mini_bbh.yaml").write_text(BBH_YAML, encoding="utf-8")
    (root / "mini_bbh.jsonl").write_text("".join(
        json.dumps({"input": i, "target": t}) + "\n" for i, t in BBH_ROWS), encoding="utf-8")
    if code:
        (root / "mini_code.yaml").write_text(CODE_YAML, encoding="utf-8")
    return root
