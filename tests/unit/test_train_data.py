"""Training data: row formats, located errors, prompt masking, defaults, progress lines and
the hf: backend's request batching. No model weights needed; the masking tests that use a
real Hugging Face tokenizer build a tiny one in memory (skipped without transformers)."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import pytest

from synthcodec.errors import InputError, MissingExtraError, UserError
from synthcodec.llm import hfmodels
from synthcodec.llm.base import Completion, Request
from synthcodec.llm.hfmodels import TRAIN_INFO, resolve_base
from synthcodec.progress import StepProgress
from synthcodec.train import sft
from synthcodec.train.data import (
    IGNORE_INDEX,
    AnswerOnlyCollator,
    encode_messages,
    examples_sha256,
    load_examples,
)
from synthcodec.train.sft import default_batch_size


def write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# --- row formats and errors ----------------------------------------------------------


def test_alpaca_openai_and_sharegpt_rows(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [
        {"instruction": "Add.", "input": "2+2", "output": "4"},
        {"instruction": "Say hi.", "input": "", "output": "hi"},
        {"instruction": "Name one.", "response": "one"},  # CodecLM rows call it response
        {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"},
                      {"role": "assistant", "content": "A"}]},
        {"conversations": [{"from": "human", "value": "Q2"}, {"from": "gpt", "value": "A2"}]},
    ])
    examples = load_examples(path)
    assert [e.line for e in examples] == [1, 2, 3, 4, 5]
    assert examples[0].messages == ({"role": "user", "content": "Add.\n\n2+2"},
                                    {"role": "assistant", "content": "4"})
    assert examples[1].messages[0]["content"] == "Say hi."  # empty input adds nothing
    assert examples[2].messages[-1] == {"role": "assistant", "content": "one"}
    assert [m["role"] for m in examples[3].messages] == ["system", "user", "assistant"]
    assert examples[4].messages == ({"role": "user", "content": "Q2"},
                                    {"role": "assistant", "content": "A2"})


def test_json_array_file(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    rows = [{"instruction": f"q{i}", "input": "ctx" if i == 1 else "", "output": f"a{i}"}
            for i in range(3)]
    path.write_text(json.dumps(rows), encoding="utf-8")
    examples = load_examples(path)
    assert [e.line for e in examples] == [1, 2, 3]  # an element's place in the array
    assert [e.messages for e in examples] == [
        ({"role": "user", "content": "q0"}, {"role": "assistant", "content": "a0"}),
        ({"role": "user", "content": "q1\n\nctx"}, {"role": "assistant", "content": "a1"}),
        ({"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2"}),
    ]


@pytest.mark.parametrize("row, line_field", [
    ({"instruction": "no answer"}, "output"),
    ({"output": "no question"}, "instruction"),
    ({"instruction": "x", "output": 3}, "output"),
    ({"instruction": "x", "output": "   "}, "output"),
    ({"instruction": "x", "input": ["a"], "output": "y"}, "input"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "user", "content": "only a question"}]}, "messages"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": None}]}, "messages[0].content"),
    ({"messages": ["not an object"]}, "messages[0]"),
])
def test_bad_row_is_located(tmp_path: Path, row: dict, line_field: str) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"instruction": "ok", "output": "ok"}, row])
    with pytest.raises(InputError) as info:
        load_examples(path)
    assert info.value.line == 2
    assert info.value.field == line_field
    assert str(path) in str(info.value)


def test_empty_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text("\n", encoding="utf-8")
    with pytest.raises(InputError, match="no rows"):
        load_examples(path)


def test_data_hash_ignores_file_format(tmp_path: Path) -> None:
    rows = [{"instruction": "a", "output": "b"}]
    a = load_examples(write_jsonl(tmp_path / "a.jsonl", rows))
    b_path = tmp_path / "b.json"
    b_path.write_text(json.dumps(rows), encoding="utf-8")
    b = load_examples(b_path)
    assert examples_sha256(a) == examples_sha256(b)
    c = load_examples(write_jsonl(tmp_path / "c.jsonl", [{"instruction": "a", "output": "c"}]))
    assert examples_sha256(a) != examples_sha256(c)


# --- masking --------------------------------------------------------------------------


class CharTokenizer:
    """ChatML rendering and one id per character: enough to check the masking logic."""

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False):
        assert tokenize is False
        text = "".join(f"<{m['role']}>{m['content']}</>" for m in messages)
        return text + ("<assistant>" if add_generation_prompt else "")

    def __call__(self, text, add_special_tokens=True):
        assert add_special_tokens is False
        return {"input_ids": [ord(c) for c in text]}


def labeled_text(ids: list[int], labels: list[int]) -> str:
    return "".join(chr(i) if lab != IGNORE_INDEX else "_" for i, lab in zip(ids, labels))


def test_only_answer_tokens_carry_labels() -> None:
    messages = [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A!"}]
    ids, labels = encode_messages(CharTokenizer(), messages)
    assert "".join(map(chr, ids)) == "<user>Q?</><assistant>A!</>"
    assert labeled_text(ids, labels) == "_" * len("<user>Q?</><assistant>") + "A!</>"


def test_multi_turn_trains_every_assistant_turn_and_masks_the_rest() -> None:
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "Q1"},
                {"role": "assistant", "content": "A1"}, {"role": "user", "content": "Q2"},
                {"role": "assistant", "content": "A2"}]
    ids, labels = encode_messages(CharTokenizer(), messages)
    assert "".join(map(chr, ids)) == "<system>S</><user>Q1</><assistant>A1</><user>Q2</><assistant>A2</>"
    trained = labeled_text(ids, labels).replace("_", " ").split()
    assert trained == ["A1</>", "A2</>"]


def test_truncation_keeps_the_start() -> None:
    messages = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "0123456789"}]
    ids, labels = encode_messages(CharTokenizer(), messages, max_length=25)
    assert len(ids) == len(labels) == 25  # "<user>Q</><assistant>" is 21 characters
    assert labeled_text(ids, labels) == "_" * 21 + "0123"


def tiny_hf_tokenizer():
    pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    from transformers import PreTrainedTokenizerFast

    tok = tokenizers.Tokenizer(tokenizers.models.BPE())
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|im_start|>", "<|im_end|>", "<pad>"],
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["what is the capital of france? paris, of course!",
                             "system user assistant you are helpful"], trainer=trainer)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<pad>")
    hf.chat_template = hfmodels.FALLBACK_CHAT_TEMPLATE
    return hf


def test_masking_with_a_real_chat_template() -> None:
    tok = tiny_hf_tokenizer()
    messages = [{"role": "user", "content": "what is the capital of france?"},
                {"role": "assistant", "content": "Paris, of course!"}]
    ids, labels = encode_messages(tok, messages)
    full = tok.apply_chat_template(messages, tokenize=False)
    assert tok.decode(ids) == full
    answer = [i for i, lab in zip(ids, labels) if lab != IGNORE_INDEX]
    assert tok.decode(answer) == "Paris, of course!<|im_end|>\n"
    prompt = tok.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    n_prompt = len(tok(prompt, add_special_tokens=False)["input_ids"])
    assert labels[:n_prompt] == [IGNORE_INDEX] * n_prompt
    assert all(lab != IGNORE_INDEX for lab in labels[n_prompt:])


def test_collator_labels_only_the_answer_tokens() -> None:
    """The Trainer's data collator: padded batches where every label that is not
    IGNORE_INDEX is an assistant token, and padding is masked and unattended."""
    pytest.importorskip("torch")
    tok = tiny_hf_tokenizer()
    short = [{"role": "user", "content": "what is the capital of france?"},
             {"role": "assistant", "content": "Paris, of course!"}]
    multi = [{"role": "system", "content": "you are helpful"},
             {"role": "user", "content": "what is the capital?"},
             {"role": "assistant", "content": "paris"},
             {"role": "user", "content": "of france?"},
             {"role": "assistant", "content": "of course!"}]
    collator = AnswerOnlyCollator(tok)
    batch = collator([{"input_ids": ids, "labels": labels}  # as training feeds it
                      for ids, labels in (encode_messages(tok, multi), encode_messages(tok, short))])
    ids, labels, attention = batch["input_ids"], batch["labels"], batch["attention_mask"]
    assert ids.shape == labels.shape == attention.shape and ids.shape[0] == 2
    answers = []
    for row in range(2):
        n = int(attention[row].sum())
        assert attention[row, :n].all() and not attention[row, n:].any()  # right padding
        assert (ids[row, n:] == tok.pad_token_id).all()
        assert (labels[row, n:] == IGNORE_INDEX).all()  # padding never counts
        kept = labels[row, :n] != IGNORE_INDEX
        assert (labels[row, :n][kept] == ids[row, :n][kept]).all()  # labels are the tokens
        # the answer tokens, in order, with the masked stretches between them as breaks
        pieces, current = [], []
        for token, keep in zip(ids[row, :n].tolist(), kept.tolist()):
            if keep:
                current.append(token)
            elif current:
                pieces.append(tok.decode(current))
                current = []
        if current:
            pieces.append(tok.decode(current))
        answers.append(pieces)
    assert answers[0] == ["paris<|im_end|>\n", "of course!<|im_end|>\n"]
    assert answers[1] == ["Paris, of course!<|im_end|>\n"]
    # Everything else (system, user turns, the "<|im_start|>assistant\n" prompts) is masked.
    prompt = tok.apply_chat_template(short[:1], tokenize=False, add_generation_prompt=True)
    n_prompt = len(tok(prompt, add_special_tokens=False)["input_ids"])
    assert (labels[1, :n_prompt] == IGNORE_INDEX).all()


def test_micro_batches_divide_the_batch() -> None:
    assert sft.micro_batch_for(4, 4) == 4
    assert sft.micro_batch_for(32, 4) == 4
    assert sft.micro_batch_for(6, 4) == 3  # 2 x 3 rows: every step sees exactly 6 rows
    assert sft.micro_batch_for(7, 4) == 1
    assert sft.micro_batch_for(2, 8) == 2


def test_one_prompt_layout_for_training_export_and_benchmarks() -> None:
    from synthcodec import questions
    from synthcodec.formats import example_from_row, examples_from_rows, join_instruction

    assert join_instruction("Add.", "2+2") == "Add.\n\n2+2"
    assert join_instruction("Say hi. ", "  ") == "Say hi. "  # whitespace input adds nothing
    assert join_instruction("Say hi.", None) == "Say hi."
    row = {"instruction": "Translate: ", "input": " chat ", "output": "cat"}
    trained = example_from_row("d.jsonl", 1, row).messages[0]["content"]
    generated = {"instruction": row["instruction"], "input": row["input"], "response": "cat"}
    exported = next(examples_from_rows([(1, generated)], {}, "d.jsonl")).messages[0]["content"]
    asked = questions.BENCH_FORMATS["self-instruct"].questions(
        "b.jsonl", 1, {"id": 1, "instruction": row["instruction"],
                       "instances": [{"input": row["input"]}]})[0].text
    assert trained == exported == asked == "Translate: \n\n chat "


# --- defaults, base specs, extras -----------------------------------------------------


def test_default_batch_size_scales_with_the_data() -> None:
    assert default_batch_size(8) == 1
    assert default_batch_size(200) == 4
    assert default_batch_size(500) == 8
    assert default_batch_size(2000) == 32
    assert default_batch_size(9229) == 64
    assert default_batch_size(52002) == 64


def test_lr_schedule_warms_up_then_decays_to_a_tenth() -> None:
    f = sft._lr_lambda(total=100, warmup=3)
    assert f(0) < f(1) < f(2) < f(3) == 1.0
    assert f(99) == pytest.approx(0.1)
    assert all(f(s) >= f(s + 1) for s in range(3, 99))


def test_base_spec_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such file"):
        resolve_base(str(tmp_path / "nope"))
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text("{}")
    with pytest.raises(UserError, match="adapter"):
        resolve_base(str(tmp_path / "adapter"))
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    assert resolve_base(str(tmp_path / "model")).kind == "hf"
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    assert resolve_base(f"gguf:{tmp_path / 'm.gguf'}").kind == "gguf"


def test_missing_extra_names_train(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "peft" else real(name, *a))
    with pytest.raises(MissingExtraError, match=r"synthcodec\[train\]"):
        hfmodels.require_train_extra("training")


def test_bad_rows_fail_before_any_model_is_loaded(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"instruction": "x", "output": "y"},
                                              {"instruction": "x"}])
    monkeypatch.setattr(sft, "resolve_base", lambda spec: pytest.fail("loaded a model"))
    with pytest.raises(InputError) as info:
        sft.train_lora(path, "local", tmp_path / "out")
    assert (info.value.line, info.value.field) == (2, "output")
    assert not (tmp_path / "out").exists()


def test_refuses_to_overwrite_a_foreign_directory(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"instruction": "x", "output": "y"}])
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "precious.txt").write_text("keep me")
    with pytest.raises(UserError, match="not a synthcodec adapter"):
        sft.train_lora(path, "local", tmp_path / "out")


class FakeSaver:
    def __init__(self, name: str, fail: bool = False) -> None:
        self.name, self.fail = name, fail

    def save_pretrained(self, path: str) -> None:
        if self.fail:
            raise OSError("disk full")
        Path(path, self.name).write_text("weights")


def test_publish_replaces_an_earlier_adapter_atomically(tmp_path: Path) -> None:
    out = tmp_path / "adapter"
    sft._publish(out, FakeSaver("adapter_model.safetensors"), FakeSaver("tokenizer.json"),
                 {"run": 1})
    assert json.loads((out / TRAIN_INFO).read_text()) == {"run": 1}
    sft._publish(out, FakeSaver("adapter_model.safetensors"), FakeSaver("tokenizer.json"),
                 {"run": 2})
    assert json.loads((out / TRAIN_INFO).read_text()) == {"run": 2}
    with pytest.raises(OSError):
        sft._publish(out, FakeSaver("x", fail=True), FakeSaver("y"), {"run": 3})
    assert json.loads((out / TRAIN_INFO).read_text()) == {"run": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]  # no leftovers


# --- progress lines -------------------------------------------------------------------


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_plain_lines_off_a_terminal() -> None:
    from synthcodec.progress import StepPrinter

    out = io.StringIO()
    printer = StepPrinter(out)
    for step in (1, 2):
        printer(StepProgress(step=step, total=4, loss=1.5 / step, epoch=step / 2, lr=2e-4,
                             elapsed=3.0 * step))
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "\r" not in out.getvalue()
    assert "1/4" in lines[0] and "loss 1.5000" in lines[0] and "ETA 0:09" in lines[0]
    assert "2/4" in lines[1] and "ETA 0:06" in lines[1]


def test_progress_redraws_one_line_on_a_terminal() -> None:
    from synthcodec.progress import StepPrinter

    out = FakeTTY()
    printer = StepPrinter(out)
    printer(StepProgress(step=1, total=2, loss=1.0, epoch=1.0, lr=1e-4, elapsed=1.0))
    printer.note("a message")
    printer(StepProgress(step=2, total=2, loss=0.5, epoch=2.0, lr=1e-4, elapsed=2.0))
    printer.close()
    text = out.getvalue()
    assert text.count("\r\x1b[2K") >= 2 and "a message\n" in text and text.endswith("\n")
    assert "[" + "#" * 20 + "]" in text


def test_train_command_help_lists_the_options() -> None:
    from click.testing import CliRunner

    from synthcodec.commands.train import command

    result = CliRunner().invoke(command, ["--help"])
    assert result.exit_code == 0
    for option in ("--base", "--output", "--epochs", "--max-steps", "--lr", "--batch-size",
                   "--lora-r", "--max-length", "--seed"):
        assert option in result.output


# --- hf: backend batching (no model: the generate step is replaced) ----------------------


def test_hf_backend_batches_waiting_requests(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from synthcodec.llm import hf

    monkeypatch.setattr(hf, "require_train_extra", lambda purpose: None)
    (tmp_path / "config.json").write_text("{}")
    backend = hf.HFBackend(tmp_path, max_batch=8)
    assert backend.supports_json_schema is False and backend.identity.startswith("hf:")
    sizes: list[int] = []

    def fake_generate(requests: list[Request]) -> list[Completion]:
        sizes.append(len(requests))
        return [Completion(text=r.messages[-1]["content"].upper(), completion_tokens=1)
                for r in requests]

    backend._generate = fake_generate  # type: ignore[method-assign]

    async def main() -> list[Completion]:
        try:
            return await asyncio.gather(*(backend.complete(Request.chat(f"q{i}"))
                                          for i in range(20)))
        finally:
            await backend.aclose()

    results = asyncio.run(main())
    assert [r.text for r in results] == [f"Q{i}" for i in range(20)]
    assert sizes == [8, 8, 4]


def test_hf_backend_identity_changes_with_the_weights(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from synthcodec.llm import hf

    monkeypatch.setattr(hf, "require_train_extra", lambda purpose: None)
    (tmp_path / "adapter_config.json").write_text("{}")
    (tmp_path / "adapter_model.safetensors").write_bytes(b"one")
    first = hf.HFBackend(tmp_path).identity
    (tmp_path / "adapter_model.safetensors").write_bytes(b"two")
    assert hf.HFBackend(tmp_path).identity != first


def test_hf_backend_rejects_a_non_model_dir(tmp_path: Path) -> None:
    from synthcodec.llm import hf

    with pytest.raises(UserError, match="config.json"):
        hf.HFBackend(tmp_path)
