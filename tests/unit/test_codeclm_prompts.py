"""CodecLM prompt builders and parsers as pure functions; pool, ROUGE-L and the decision rule."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from synthcodec.codeclm.config import per_metadata_for
from synthcodec.codeclm.pool import build_pool
from synthcodec.codeclm.prompts import (
    EncodedMetadata,
    Prompts,
    answer_request,
    decode_request,
    encode_request,
    improve_request,
    parse_instructions,
    parse_rewrite,
    parse_rubric_actions,
    rubrics_request,
)
from synthcodec.codeclm.rouge import NearDuplicateFilter, lcs_length, rouge_l, tokens
from synthcodec.codeclm.steps import (
    IMPROVE,
    KEEP_STRONG,
    KEEP_TARGET,
    UNRESOLVED,
    choose_action,
    decide,
)
from synthcodec.errors import UserError
from synthcodec.parsing import ParseError, parse_pair_scores

P = Prompts.load()


# --------------------------------------------------------------------------- rendering

def test_encode_is_few_shot_and_ends_with_the_seed() -> None:
    req = encode_request(P, "Summarize this $5 article.", temperature=0.7, max_tokens=64)
    text = req.messages[-1]["content"]
    assert text.count("Instruction:") == 4  # three worked examples + the seed
    assert text.rstrip().endswith("Instruction: Summarize this $5 article.")
    assert "no explanation" in text and req.temperature == 0.7 and req.max_tokens == 64


def test_decode_and_rubrics_name_the_metadata_and_count() -> None:
    d = decode_request(P, "code generation", ["python", "testing"], 7, temperature=0.7,
                       max_tokens=100, sample=2)
    text = d.messages[-1]["content"]
    assert "Write 7 diverse instructions" in text and "numbered list of 7" in text
    assert "Use case: code generation" in text and "python, testing" in text
    assert d.sample == 2
    r = rubrics_request(P, "code generation", ["python"], 4, temperature=0.7, max_tokens=100)
    assert "Write 4 rubrics" in r.messages[-1]["content"]
    assert "Rubrics:" in r.messages[-1]["content"] and "Actions:" in r.messages[-1]["content"]


def test_improve_carries_action_and_instruction_values_verbatim() -> None:
    req = improve_request(P, "Write a $dimension poem.", "Add a rhyme scheme.", "creative writing",
                          ["poetry"], temperature=0.7, max_tokens=50)
    text = req.messages[-1]["content"]
    assert "following this action: Add a rhyme scheme." in text
    assert text.endswith("Instruction: Write a $dimension poem.")  # values never re-expanded


def test_answer_request_is_the_bare_instruction() -> None:
    req = answer_request("What is 2+2?", temperature=0.7, max_tokens=10, sample=1)
    assert req.messages == ({"role": "user", "content": "What is 2+2?"},) and req.sample == 1


def test_user_prompt_folder_overrides_one_template(tmp_path: Path) -> None:
    (tmp_path / "codeclm_decode.txt").write_text(
        "[system]\nBe terse.\n[user]\nGive $n tasks for $use_case using $skills.\n")
    p = Prompts.load(tmp_path)
    req = decode_request(p, "math", ["algebra"], 3, temperature=0.7, max_tokens=10)
    assert req.messages[0] == {"role": "system", "content": "Be terse."}
    assert req.messages[1]["content"] == "Give 3 tasks for math using algebra."
    assert p.encode.text == P.encode.text  # the others stay packaged
    assert p.sha256("decode") != P.sha256("decode")


def test_override_with_unknown_placeholder_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "codeclm_improve.txt").write_text("Improve $instruction with $actoin.\n")
    with pytest.raises(UserError, match=r"unknown placeholder.*\$actoin"):
        Prompts.load(tmp_path)


# --------------------------------------------------------------------------- encode output

def test_encoded_metadata_normalizes_and_keeps_three_skills() -> None:
    m = EncodedMetadata.model_validate_json(
        '{"use_case": " Code Generation. ", "skills": ["Python", "python", "SQL", "testing", "git"]}')
    assert m.use_case == "code generation" and m.skills == ["python", "sql", "testing"]
    m = EncodedMetadata.model_validate({"use_case": "math", "skills": "algebra, proofs"})
    assert m.skills == ["algebra", "proofs"]
    with pytest.raises(ValidationError):
        EncodedMetadata.model_validate({"use_case": "", "skills": ["x"]})
    with pytest.raises(ValidationError):
        EncodedMetadata.model_validate({"use_case": "math", "skills": []})
    assert EncodedMetadata.model_json_schema()["properties"]["skills"]["maxItems"] == 3


# --------------------------------------------------------------------------- decode output

@pytest.mark.parametrize("text", [
    "1. Write a haiku about rain.\n2. Describe a sunset in prose.\n3. Draft a short fable.",
    ("Sure! Here are three instructions:\n\n1) Write a haiku about rain.\n2) Describe a sunset "
    "in prose.\n3) Draft a short fable.\n\nLet me know if you need more."),
    ("**1.** Write a haiku about rain.\n**2.** Describe a sunset in prose.\n"
    "**3.** Draft a short fable."),
    ("Instruction 1: \"Write a haiku about rain.\"\nInstruction 2: \"Describe a sunset in prose.\"\n"
    "Instruction 3: \"Draft a short fable.\""),
    "- Write a haiku about rain.\n- Describe a sunset in prose.\n- Draft a short fable.",
])
def test_parse_instructions_odd_formats(text: str) -> None:
    assert parse_instructions(text, 5) == ["Write a haiku about rain.",
                                           "Describe a sunset in prose.", "Draft a short fable."]


def test_parse_instructions_drops_empty_duplicates_and_extras() -> None:
    text = ("1. Write a haiku about rain.\n2.\n3. write a haiku  about rain.\n"
            "4. Instructions:\n5. Describe a sunset in prose.\n6. Draft a short fable.")
    assert parse_instructions(text, 2) == ["Write a haiku about rain.",
                                           "Describe a sunset in prose."]


def test_truncated_list_loses_its_cut_item() -> None:
    text = "1. Write a haiku about rain.\n2. Describe a sunset in prose.\n3. Draft a short fab"
    assert parse_instructions(text, 5, truncated=True) == ["Write a haiku about rain.",
                                                           "Describe a sunset in prose."]


def test_no_list_is_a_parse_error() -> None:
    with pytest.raises(ParseError):
        parse_instructions("I cannot help with that.", 3)


# --------------------------------------------------------------------------- rubrics output

def test_rubrics_with_headings_and_trimmed_to_n() -> None:
    text = ("**Rubrics:**\n1. Depth of analysis\n2. Number of constraints\n3. Domain knowledge\n"
            "4. Ambiguity\n5. Extra\n\n**Actions:**\n1. Ask for a SWOT analysis.\n"
            "2. Add a budget limit.\n3. Require citing regulations.\n4. Add conflicting goals.")
    rubrics, actions = parse_rubric_actions(text, 4)
    assert len(rubrics) == 4 and rubrics[0] == "Depth of analysis"
    assert actions == ["Ask for a SWOT analysis.", "Add a budget limit.",
                       "Require citing regulations.", "Add conflicting goals."]


def test_rubrics_without_headings_are_two_lists() -> None:
    rubrics, actions = parse_rubric_actions("1. a rubric\n2. b rubric\n1. do a\n2. do b", 4)
    assert rubrics == ["a rubric", "b rubric"] and actions == ["do a", "do b"]


def test_rubrics_with_one_list_is_a_parse_error() -> None:
    with pytest.raises(ParseError):
        parse_rubric_actions("1. only\n2. one list", 4)


# --------------------------------------------------------------------------- improve output

@pytest.mark.parametrize("text", [
    "Write a haiku about rain that uses a kigo.",
    "New instruction: Write a haiku about rain that uses a kigo.",
    "**Rewritten instruction:** \"Write a haiku about rain that uses a kigo.\"",
    "Here is the new instruction: Write a haiku about rain that uses a kigo.",
    "```\nWrite a haiku about rain that uses a kigo.\n```",
])
def test_parse_rewrite(text: str) -> None:
    assert parse_rewrite(text) == "Write a haiku about rain that uses a kigo."


def test_parse_rewrite_rejects_empty() -> None:
    with pytest.raises(ParseError):
        parse_rewrite("New instruction:")


# --------------------------------------------------------------------------- scores and decision

@pytest.mark.parametrize(("text", "pair"), [
    ("8 7", (8.0, 7.0)),
    ("Assistant 1: 8\nAssistant 2: 6", (8.0, 6.0)),
    ("9 4\nAssistant 1 is more detailed.", (9.0, 4.0)),
])
def test_pair_scores_used_by_contrast(text: str, pair: tuple[float, float]) -> None:
    assert parse_pair_scores(text, 1, 10) == pair


@pytest.mark.parametrize("text", ["11 7", "0 5", "", "Both are good.", "8"])
def test_pair_scores_out_of_range_or_missing(text: str) -> None:
    with pytest.raises(ParseError):
        parse_pair_scores(text, 1, 10)


def test_decide_keeps_only_beyond_theta_and_gives_up_after_last_round() -> None:
    assert decide(3.5, 3, 1, 4) == KEEP_STRONG
    assert decide(-3.5, 3, 1, 4) == KEEP_TARGET
    assert decide(3.0, 3, 1, 4) == IMPROVE  # |G| must exceed theta
    assert decide(-3.0, 3, 3, 4) == IMPROVE
    assert decide(0.0, 3, 4, 4) == UNRESOLVED


def test_choose_action_is_reproducible_per_record_and_round() -> None:
    actions = ["a", "b", "c", "d"]
    picks = [choose_action(actions, 0, f"m0-i{k}", 2) for k in range(20)]
    assert picks == [choose_action(actions, 0, f"m0-i{k}", 2) for k in range(20)]
    assert len(set(picks)) > 1
    assert picks != [choose_action(actions, 1, f"m0-i{k}", 2) for k in range(20)]


# --------------------------------------------------------------------------- pool

ENCODED = [
    {"seed_id": "s1", "use_case": "creative writing", "skills": ["poetry"]},
    {"seed_id": "s2", "use_case": "creative writing", "skills": ["poetry"]},
    {"seed_id": "s3", "use_case": "code generation", "skills": ["python", "testing"]},
]


def test_pool_observed_first_then_mix_and_match() -> None:
    pool = build_pool(ENCODED, size=6, seed=1)
    assert pool[0] == {"id": "m0000", "use_case": "creative writing", "skills": ["poetry"],
                       "seed_ids": ["s1", "s2"], "source": "observed"}
    assert pool[1]["source"] == "observed" and pool[1]["seed_ids"] == ["s3"]
    mixed = pool[2:]
    assert len(pool) == 6 and all(m["source"] == "mixed" for m in mixed)
    keys = {(m["use_case"], frozenset(m["skills"])) for m in pool}
    assert len(keys) == 6  # no pair twice
    for m in mixed:
        assert 1 <= len(m["skills"]) <= 3 and m["seed_ids"]
    assert build_pool(ENCODED, size=6, seed=1) == pool
    assert build_pool(ENCODED, size=1, seed=1) == pool[:1]


def test_pool_stops_when_no_new_pairs_exist() -> None:
    pool = build_pool([{"seed_id": "s", "use_case": "u", "skills": ["a"]}], size=10)
    assert len(pool) == 1


def test_per_metadata_follows_the_requested_size() -> None:
    assert per_metadata_for(2000, 200, 2.0) == 20
    assert per_metadata_for(3, 10, 2.0) == 1


# --------------------------------------------------------------------------- ROUGE-L

def test_lcs_matches_the_textbook_dynamic_program() -> None:
    def dp(a: list[str], b: list[str]) -> int:
        t = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
        for i, x in enumerate(a):
            for j, y in enumerate(b):
                t[i + 1][j + 1] = t[i][j] + 1 if x == y else max(t[i][j + 1], t[i + 1][j])
        return t[-1][-1]

    import random
    rng = random.Random(0)
    for _ in range(200):
        a = [rng.choice("abcde") for _ in range(rng.randint(0, 70))]
        b = [rng.choice("abcde") for _ in range(rng.randint(0, 70))]
        assert lcs_length(a, b) == dp(a, b)


def test_rouge_l_and_near_duplicate_filter() -> None:
    assert tokens("Write, a POEM!") == ["write", "a", "poem"]
    assert rouge_l("write a poem about the sea", "write a poem about the sea") == 1.0
    assert rouge_l("write a poem", "") == 0.0
    near = NearDuplicateFilter(0.7)
    assert near.add("Write a short poem about the sea at night.")
    assert not near.add("Write a short poem about the sea at dawn.")
    assert near.add("Explain how a hash table handles collisions.")
    assert near.removed == 1 and len(near) == 2


def test_filter_agrees_with_brute_force() -> None:
    import random

    rng = random.Random(3)
    vocab = ["the", "a", "of", "write", "poem", "sea", "night", "story", "code", "python", "list", "explain", "why", "how"]
    texts = [" ".join(rng.choice(vocab) for _ in range(rng.randint(3, 12))) for _ in range(300)]
    near, kept = NearDuplicateFilter(0.7), []
    for text in texts:
        expect = all(rouge_l(text, k) <= 0.7 for k in kept)
        assert near.add(text) == expect
        if expect:
            kept.append(text)
    assert near.removed == len(texts) - len(kept)
