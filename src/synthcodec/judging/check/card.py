"""The judge card: per probe the pass rate with a 95% Wilson interval, the rater's score
spread, position bias, agreement with human labels, and a verdict (usable / weak / noise)
by the thresholds below. Built from the judged probes only (judging.check.run), so every number
can be recomputed from the judge's replies."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from synthcodec.judging.stats import wilson

__all__ = ["JudgeCard", "ProbeStats", "Spread", "THRESHOLDS", "verdict_of"]

# Pass rate each probe needs for a usable judge. Swapped real pairs are often close, and
# even GPT-4 holds its verdict on only ~65% of them (MT-Bench), hence the lower bar.
USABLE = {"swap": 0.6, "wrong_question": 0.8, "cut_short": 0.8, "padding": 0.8,
          "identical": 0.8}
NOISE_DISCRIMINATION = 0.6  # mean pass rate of wrong_question and cut_short below this
NOISE_SWAP = 0.4  # holds its verdict on fewer swapped pairs than this
NOISE_MODAL_SHARE = 0.8  # a rater giving this share of answers one and the same score
USABLE_MODAL_SHARE = 0.6  # ... and at most this share, for a usable one
THRESHOLDS = {"usable": USABLE, "usable_modal_share": USABLE_MODAL_SHARE,
              "noise_discrimination": NOISE_DISCRIMINATION, "noise_swap": NOISE_SWAP,
              "noise_modal_share": NOISE_MODAL_SHARE}
RULES_TEXT = (
    "**usable**: every probe passes at least its bar (swap {swap:.0%}, wrong question "
    "{wrong_question:.0%}, cut short {cut_short:.0%}, padding {padding:.0%}, identical "
    "{identical:.0%}) and a rater gives at most {usable_modal:.0%} of answers one score; "
    "**noise**: the mean of wrong question and cut short is below {discrimination:.0%} (the "
    "judge cannot tell a real answer from a wrong or broken one), or it holds its verdict on "
    "fewer than {noise_swap:.0%} of swapped pairs, or a rater gives {noise_modal:.0%} or more "
    "of answers one score, or no probe could be judged; **weak**: anything between."
).format(**USABLE, usable_modal=USABLE_MODAL_SHARE, discrimination=NOISE_DISCRIMINATION,
         noise_swap=NOISE_SWAP, noise_modal=NOISE_MODAL_SHARE)

WHAT = {
    "swap": "the verdict holds when the two answers swap places",
    "wrong_question": "the real answer beats an answer to another instruction",
    "cut_short": "the whole answer beats its first third",
    "padding": "the answer padded with filler does not win",
    "identical": "two identical answers tie",
}


@dataclass
class ProbeStats:
    """One probe kind's judgements: `right` the sound outcome, `tie`, `wrong` the unsound
    one; `passed` what counts as passing (right, or right + tie for padding, tie for
    identical); per pair for swap, per judgement (each order) otherwise."""

    kind: str
    unit: str  # "pairs" or "judgements"
    right: int = 0
    tie: int = 0
    wrong: int = 0
    failed: int = 0  # probes the judge gave no readable verdict for (not in n)

    @property
    def n(self) -> int:
        return self.right + self.tie + self.wrong

    @property
    def passed(self) -> int:
        if self.kind == "padding":
            return self.right + self.tie
        if self.kind == "identical":
            return self.tie
        return self.right

    @property
    def rate(self) -> float | None:
        return self.passed / self.n if self.n else None

    def as_dict(self) -> dict[str, Any]:
        ci = wilson(self.passed, self.n)
        return {"what": WHAT[self.kind], "unit": self.unit, "n": self.n, "passed": self.passed,
                "rate": self.rate, "ci95": list(ci) if ci else None, "right": self.right,
                "tie": self.tie, "wrong": self.wrong, "failed": self.failed,
                "usable_at": USABLE[self.kind]}


@dataclass
class Spread:
    """How a rater's scores of the real answers spread."""

    scores: list[float]

    @property
    def modal(self) -> tuple[float, int]:
        value, count = Counter(self.scores).most_common(1)[0]
        return value, count

    @property
    def modal_share(self) -> float:
        return self.modal[1] / len(self.scores)

    def as_dict(self) -> dict[str, Any]:
        if not self.scores:
            return {"n": 0}
        value, count = self.modal
        return {"n": len(self.scores), "distinct": len(set(self.scores)),
                "modal_score": value, "modal_count": count, "modal_share": self.modal_share,
                "mean": statistics.fmean(self.scores), "sd": statistics.pstdev(self.scores),
                "min": min(self.scores), "max": max(self.scores)}


@dataclass
class JudgeCard:
    judge: str  # the model spec, as shown
    role: str  # "rater" or "pairwise"
    probes: dict[str, ProbeStats]
    spread: Spread | None = None  # raters only
    first_shown_wins: tuple[int, int] | None = None  # pairwise: (first shown won, decided)
    settings: dict[str, Any] = field(default_factory=dict)  # how the judge was asked
    data: str = ""  # where the probes came from
    per_kind: int = 0
    requests: dict[str, int] = field(default_factory=dict)  # {"sent", "cached"}
    labels: dict[str, Any] | None = None  # agreement with human labels (judging.check.labels)
    examples: list[dict[str, Any]] = field(default_factory=list)  # failed probes, clipped
    requests_sha256: str = ""  # judging.check.run.Plan.sha256: a later run re-uses the card

    @property
    def verdict(self) -> str:
        return verdict_of(self)

    def line(self) -> str:
        """One line: the verdict and the worst findings."""
        findings = _findings(self)
        verdict = self.verdict
        if verdict == "usable":
            worst = min((s for s in self.probes.values() if s.n), default=None,
                        key=lambda s: s.rate or 0)
            lowest = (f" (lowest: {_name(worst.kind)} {worst.rate:.0%})"
                      if worst is not None and (worst.rate or 0) < 1 else "")
            return f"judge {self.judge}: usable — passes every probe{lowest}"
        tail = ("its verdicts do not measure quality" if verdict == "noise"
                else "read its verdicts with care")
        return f"judge {self.judge}: {verdict} — {', '.join(findings[:3])}; {tail}"

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "judge": self.judge, "role": self.role, "verdict": self.verdict,
            "line": self.line(), "data": self.data, "probes_per_kind": self.per_kind,
            "probes": {kind: s.as_dict() for kind, s in self.probes.items()},
        }
        if self.spread is not None:
            out["spread"] = self.spread.as_dict()
        if self.first_shown_wins is not None:
            won, decided = self.first_shown_wins
            out["first_shown_wins"] = {"won": won, "decided": decided,
                                       "rate": won / decided if decided else None}
        out.update(settings=self.settings, requests=self.requests, thresholds=THRESHOLDS)
        if self.requests_sha256:
            out["requests_sha256"] = self.requests_sha256
        if self.labels is not None:
            out["labels"] = self.labels
        out["examples"] = self.examples
        return out

    def markdown(self, heading: str = "##") -> str:
        role = "rater" if self.role == "rater" else "pairwise judge"
        lines = [f"{heading} Judge card: `{self.judge}` as {role} — **{self.verdict}**", "",
                 self.line(), "",
                 "| probe | a sound judge | n | pass | 95% CI | right / tie / wrong |",
                 "|---|---|---:|---:|---|---|"]
        for kind, s in self.probes.items():
            ci = wilson(s.passed, s.n)
            lines.append(
                f"| {_name(kind)} | {WHAT[kind]} | {s.n} {s.unit} | "
                f"{_pct(s.rate)} | {f'{ci[0]:.0%}–{ci[1]:.0%}' if ci else '–'} | "
                f"{s.right} / {s.tie} / {s.wrong}" + (f" ({s.failed} failed)" if s.failed else "")
                + " |")
        lines.append("")
        if self.spread is not None and self.spread.scores:
            d = self.spread.as_dict()
            lines.append(f"Scores of the {d['n']} real answers: {d['distinct']} distinct, "
                         f"{d['modal_share']:.0%} at {d['modal_score']:g}, mean "
                         f"{d['mean']:.2f}, sd {d['sd']:.2f}, range {d['min']:g}–{d['max']:g}.")
            lines.append("")
        if self.first_shown_wins is not None and self.first_shown_wins[1]:
            won, decided = self.first_shown_wins
            lines.append(f"Position: the answer shown first won {won} of the {decided} "
                         f"judgements that were not ties ({won / decided:.0%}; 50% is none).")
            lines.append("")
        if self.labels is not None:
            lines += _labels_markdown(self.labels) + [""]
        shown = ", ".join(f"{k} {v}" for k, v in self.settings.items())
        lines.append(f"Measured on {self.data} with {self.per_kind} probes per kind "
                     f"({self.requests.get('sent', 0)} requests sent, "
                     f"{self.requests.get('cached', 0)} from the cache); the prompts and "
                     f"parsers of the real command" + (f" ({shown})" if shown else "") + ".")
        lines += ["", "Verdict rules: " + RULES_TEXT, ""]
        return "\n".join(lines)


def verdict_of(card: JudgeCard) -> str:
    """usable, weak or noise, by THRESHOLDS (RULES_TEXT says them in words)."""
    measured = {k: s for k, s in card.probes.items() if s.n}
    if not measured:
        return "noise"
    discrimination = [measured[k].rate for k in ("wrong_question", "cut_short") if k in measured]
    if discrimination and sum(r or 0 for r in discrimination) / len(discrimination) \
            < NOISE_DISCRIMINATION:
        return "noise"
    swap = measured.get("swap")
    if swap is not None and (swap.rate or 0) < NOISE_SWAP:
        return "noise"
    spread = card.spread
    if spread is not None and spread.scores and spread.modal_share >= NOISE_MODAL_SHARE:
        return "noise"
    if all((s.rate or 0) >= USABLE[k] for k, s in measured.items()) and \
            (spread is None or not spread.scores or spread.modal_share <= USABLE_MODAL_SHARE):
        return "usable"
    return "weak"


def _findings(card: JudgeCard) -> list[str]:
    """What fell short: what makes a judge noise first, then the rest, furthest below its
    bar first."""
    measured = {k: s for k, s in card.probes.items() if s.n}
    discrimination = [measured[k].rate or 0 for k in ("wrong_question", "cut_short")
                      if k in measured]
    blind = bool(discrimination) and sum(discrimination) / len(discrimination) \
        < NOISE_DISCRIMINATION
    scored: list[tuple[float, str]] = []
    for kind, s in measured.items():
        rate = s.rate or 0
        if rate >= USABLE[kind]:
            continue
        wrong = s.wrong / s.n
        text = {
            "swap": f"flips {1 - rate:.0%} of swapped pairs",
            "wrong_question": f"picks the real answer over another question's only "
                              f"{rate:.0%} of the time",
            "cut_short": (f"prefers a third of an answer {wrong:.0%} of the time"
                          if s.wrong >= s.tie else
                          f"ties an answer with its first third {s.tie / s.n:.0%} of the time"),
            "padding": f"prefers an answer padded with filler {wrong:.0%} of the time",
            "identical": f"ties two identical answers only {rate:.0%} of the time",
        }[kind]
        decisive = (kind == "swap" and rate < NOISE_SWAP) or \
            (blind and kind in ("wrong_question", "cut_short"))
        scored.append((USABLE[kind] - rate + (1 if decisive else 0), text))
    spread = card.spread
    if spread is not None and spread.scores and spread.modal_share > USABLE_MODAL_SHARE:
        value, _ = spread.modal
        decisive = spread.modal_share >= NOISE_MODAL_SHARE
        scored.append((spread.modal_share - USABLE_MODAL_SHARE + (1 if decisive else 0),
                       f"gives {spread.modal_share:.0%} of answers the same score ({value:g})"))
    if not measured:
        scored.append((2.0, "gave no readable verdict on any probe"))
    return [text for _, text in sorted(scored, key=lambda t: -t[0])]


def _labels_markdown(labels: dict[str, Any]) -> list[str]:
    kappa, auc = labels.get("kappa"), labels.get("auc")
    return [f"Human labels ({labels['file']}, {labels['n']} matched): agreement "
            f"{_pct(labels.get('agreement'))}, Cohen's κ "
            f"{'–' if kappa is None else f'{kappa:.2f}'}, AUC "
            f"{'–' if auc is None else f'{auc:.2f}'} ({labels['how']})."]


def _name(kind: str) -> str:
    return kind.replace("_", " ")


def _pct(rate: float | None) -> str:
    return "–" if rate is None else f"{rate:.0%}"
