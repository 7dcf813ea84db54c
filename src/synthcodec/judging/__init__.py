"""Judging with an LLM, and knowing whether the judge can: `pairwise` (one pair of answers in
both orders, the verdict and the quality gap), `outcomes` (win/tie/lose under the papers'
rules, CRR), `expected_score` (scores from log-probabilities), `fence` (untrusted text in a
judge prompt), `stats` (intervals and agreement for cards and reports) and `check` (the judge
check: probes whose right answer is known, and the judge card)."""
