"""Prices, dollars per run and --budget / --max-tokens-total (issue 12: Cost, --budget)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from synthcodec.cost import BudgetReached, Spend
from synthcodec.errors import UserError
from synthcodec.llm.base import Completion, Request
from synthcodec.prices import (
    DEFAULT_PRICES_TOML,
    LOCAL,
    Price,
    PriceBook,
    PriceTable,
    parse_price_option,
)
from tests.helpers import read_jsonl, synthcodec, write_jsonl

# ------------------------------------------------------------------ the price table


def test_packaged_table_prices_openai_models_and_says_where_it_came_from() -> None:
    book = PriceBook.build(env={})
    price = book.price("judge", "openai:gpt-4o-mini")
    assert price is not None and price.input == 0.15 and price.output == 0.60
    assert price.cached_input == 0.075 and price.batch_input is not None
    # The table's own `source` line (where the numbers are from, and to verify them) is the
    # price's source, and the manifest shows it beside the price.
    assert price.source == tomllib.loads(DEFAULT_PRICES_TOML)["source"]
    spend = Spend()
    spend.meter("openai:gpt-4o-mini", price)
    shown = spend.usage_fields()["models"]["openai:gpt-4o-mini"]["price_per_1m"]
    assert shown["source"] == price.source


def test_local_models_are_free_and_unknown_ones_have_no_price() -> None:
    book = PriceBook.build(env={})
    for spec in ("local", "", "gguf:/x/model.gguf", "/x/m.gguf", "hf:adapters/kept",
                 "fake:echo", "fake"):
        assert book.price("model", spec) is LOCAL
    assert book.price("model", "llama3.2:3b@http://127.0.0.1:11434/v1") is None
    assert book.price("model", "openai:gpt-9-imaginary") is None
    # A served model is never local, whatever its name: load_backend sends NAME@URL over HTTP.
    for spec in ("fake-gpt@http://127.0.0.1:8000/v1", "fakeout@https://api.example.com/v1"):
        assert book.price("model", spec) is None
        assert PriceBook.build(env={}, price=["1,2"]).price("model", spec) == Price(
            1, 2, source="--price")


def test_exact_name_beats_globs_and_the_longest_glob_wins() -> None:
    table = PriceTable.parse({"models": {
        "gpt-4o*": {"input": 2.5, "output": 10},
        "gpt-4o-mini*": {"input": 0.15, "output": 0.6},
        "gpt-4o-mini-2024-07-18": {"input": 0.1, "output": 0.5},
    }}, "t")
    assert table.lookup("gpt-4o-mini-2024-07-18").input == 0.1
    assert table.lookup("gpt-4o-mini-2099-01-01").input == 0.15
    assert table.lookup("gpt-4o-2024-08-06").input == 2.5
    assert table.lookup("claude") is None


def test_name_at_url_is_priced_by_its_name_or_its_whole_spec(tmp_path: Path) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text('[models."qwen*"]\ninput = 0.2\noutput = 0.4\n'
                      '[models."qwen-72b@http://gpu:8000/v1"]\ninput = 1\noutput = 2\n')
    book = PriceBook.build(str(prices), env={})
    assert book.price("strong", "qwen-7b@http://127.0.0.1:8000/v1").input == 0.2
    assert book.price("strong", "qwen-72b@http://gpu:8000/v1").input == 1.0


def test_file_from_env_and_option_json_and_toml(tmp_path: Path) -> None:
    toml = tmp_path / "p.toml"
    toml.write_text('[models.mine]\ninput = 1.5\noutput = 3\ncached_input = 0.5\n')
    js = tmp_path / "p.json"
    js.write_text(json.dumps({"models": {"mine": {"input": 7, "output": 8}}}))
    assert PriceBook.build(env={"SYNTHCODEC_PRICES": str(toml)}).price(
        "m", "mine@http://127.0.0.1:1/v1") == Price(1.5, 3.0, 0.5, source=str(toml))
    # --prices FILE wins over the environment
    book = PriceBook.build(str(js), env={"SYNTHCODEC_PRICES": str(toml)})
    assert book.price("m", "mine@http://127.0.0.1:1/v1").input == 7
    # the packaged table is still there underneath
    assert book.price("m", "openai:gpt-4o").input == 2.5


@pytest.mark.parametrize("content, message", [
    ('[models.x]\ninput = 1\n', "needs 'output'"),
    ('[models.x]\ninput = 1\noutput = -2\n', "expected a price >= 0"),
    ('[models.x]\ninput = 1\noutput = 2\ncahced_input = 1\n', "unknown field"),
    ('[models.x\n', "not valid TOML"),
])
def test_bad_price_files_say_what_is_wrong(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "p.toml"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        PriceBook.build(str(path), env={})


def test_price_option_unkeyed_by_role_or_by_model() -> None:
    assert parse_price_option("0.15,0.6") == (None, Price(0.15, 0.6, source="--price"))
    assert parse_price_option("judge=2.5,10,1.25") == ("judge", Price(2.5, 10, 1.25, source="--price"))
    book = PriceBook.build(price=["1,2", "target=0,0", "big*=5,6"], env={})
    strong, target = "big-model@http://127.0.0.1:1/v1", "small@http://127.0.0.1:2/v1"
    assert book.price("strong", strong).input == 5  # the last matching --price wins
    assert book.price("target", target).input == 0
    assert book.price("judge", "other@http://127.0.0.1:3/v1").input == 1
    assert book.price("judge", "local") is LOCAL  # an unkeyed price never prices a local model
    assert PriceBook.build(price=["model=1,2"], env={}).price("model", "fake:echo").input == 1
    for bad in ("1", "a,b", "=1,2", "1,2,3,4", "-1,2"):
        with pytest.raises(UserError, match="--price"):
            parse_price_option(bad)
    with pytest.raises(UserError, match="no role or model"):
        PriceBook.build(price=["jduge=1,2"], env={}).check({"judge": "openai:gpt-4o"})


# ------------------------------------------------------------------ spending


def _request(chars: int, max_tokens: int) -> Request:
    return Request.chat("x" * chars, max_tokens=max_tokens)


def test_reserve_worst_case_then_settle_real_usage() -> None:
    spend = Spend(budget_usd=1.0)
    meter = spend.meter("m", Price(1000.0, 2000.0))  # $0.001 / $0.002 per token
    ticket = meter.reserve(_request(400, 100))  # ~100 + 4 prompt tokens, 100 out
    assert spend.reserved_usd == pytest.approx(0.104 + 0.2)
    meter.settle(ticket, Completion("ok", prompt_tokens=100, completion_tokens=10))
    assert spend.reserved_usd == 0 and spend.usd == pytest.approx(0.1 + 0.02)
    # cached prompt tokens at the cached price when there is one
    spend2 = Spend()
    m2 = spend2.meter("m", Price(1000.0, 0.0, cached_input=100.0))
    m2.settle(m2.reserve(_request(4, 1)), Completion(
        "", prompt_tokens=100, extra={"cached_tokens": 60}))
    assert spend2.usd == pytest.approx(0.04 + 0.006)


def test_budget_refuses_a_request_that_could_cross_it_counting_in_flight() -> None:
    stopped: list[bool] = []
    spend = Spend(budget_usd=0.5, before={"usd": 0.2})  # earlier invocations spent 0.2
    spend.on_stop.append(lambda: stopped.append(True))
    meter = spend.meter("m", Price(1000.0, 1000.0))
    first = meter.reserve(_request(400, 100))  # ~0.204 reserved: 0.404 <= 0.5
    with pytest.raises(BudgetReached, match="budget reached"):
        meter.reserve(_request(400, 100))  # would be 0.608
    assert stopped == [True] and spend.stopped
    with pytest.raises(BudgetReached):
        meter.reserve(_request(400, 100))
    spend.stop("budget reached elsewhere (another shard)")
    assert stopped == [True] and spend.stopped.startswith("budget reached: the next")  # once
    meter.settle(first, Completion("", prompt_tokens=100, completion_tokens=1))
    assert spend.total_usd == pytest.approx(0.301)


def test_token_cap_counts_every_invocation() -> None:
    spend = Spend(max_tokens=1000, before={"prompt_tokens": 600, "completion_tokens": 300})
    meter = spend.meter("local", LOCAL)
    with pytest.raises(BudgetReached, match="token cap"):
        meter.reserve(_request(40, 100))


def test_projection_and_unknown_prices() -> None:
    spend = Spend()
    meter = spend.meter("m", Price(1000.0, 0.0))
    for _ in range(4):
        meter.settle(meter.reserve(_request(4, 1)), Completion("", prompt_tokens=250))
    assert spend.projection(spend.usd, done=4, remaining=16) == pytest.approx(5.0)  # 1 + 16 x 0.25
    unknown = Spend()
    um = unknown.meter("mystery@http://127.0.0.1:1/v1", None)
    um.settle(um.reserve(_request(4, 1)), Completion("", prompt_tokens=5, completion_tokens=7))
    assert unknown.projection(0.0, 1, 1) is None
    lines = unknown.lines(kept=1)
    assert lines == ["price unknown for mystery@http://127.0.0.1:1/v1 (tokens in 5 out 7): "
                     "add it with --price or --prices FILE"]
    assert "$" not in " ".join(lines)
    assert unknown.usage_fields()["price_unknown"] == ["mystery@http://127.0.0.1:1/v1"]


# ------------------------------------------------------------------ whole runs (mock server)


def _rows(n: int) -> list[dict]:
    return [{"id": i, "prompt": f"question {i}: " + "word " * 40} for i in range(n)]


def _run(src: Path, out: Path, url: str, *extra: str):
    return synthcodec("complete", str(src), "-m", f"m@{url}", "--max-tokens", "64", "-j", "8",
                      "--no-cache", "-o", str(out), *extra)


def test_dollars_in_summary_and_manifest_and_unknown_price_gives_tokens_only(
        tmp_path: Path) -> None:
    from tests.mock_server import serve_in_subprocess

    src = write_jsonl(tmp_path / "in.jsonl", _rows(10))
    with serve_in_subprocess() as (_, url):
        priced = _run(src, tmp_path / "a", url, "--price", "100,200", "-q")
        unknown = _run(src, tmp_path / "b", url, "-q")
    assert priced.returncode == 0 and unknown.returncode == 0, priced.stderr + unknown.stderr
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    usage = manifest["usage_total"]
    expected = (usage["prompt_tokens"] * 100 + usage["completion_tokens"] * 200) / 1e6
    assert usage["usd"] == pytest.approx(expected, abs=1e-6) and expected > 0
    assert manifest["cost"]["models"][f"m@{url}"]["price_per_1m"]["input"] == 100
    assert f"cost ${expected:.4f} this invocation" in priced.stderr
    assert f"${expected / 10:.6f} per kept row" in priced.stderr
    # no price: tokens only, never a dollar figure
    manifest_b = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert "usd" not in manifest_b["usage_total"]
    assert manifest_b["cost"]["price_unknown"] == [f"m@{url}"]
    assert f"price unknown for m@{url}" in unknown.stderr and "add it with --price" in unknown.stderr
    assert "cost $" not in unknown.stderr


def test_progress_line_shows_dollars_and_a_projection(tmp_path: Path) -> None:
    from tests.mock_server import serve_in_subprocess

    src = write_jsonl(tmp_path / "in.jsonl", _rows(6))
    with serve_in_subprocess(latency=0.3) as (_, url):
        result = synthcodec("complete", str(src), "-m", f"m@{url}", "--price", "100,200",
                            "-j", "1", "--no-cache", "-o", str(tmp_path / "r"),
                            "--max-tokens", "64")
    # plain (non-TTY) progress lines every 10 s are too slow for a test: the final one
    assert result.returncode == 0, result.stderr
    final = [line for line in result.stderr.splitlines() if line.startswith("complete")][-1]
    assert "| $0.0" in final


def test_budget_stops_before_crossing_and_a_larger_budget_finishes_the_rest(
        tmp_path: Path) -> None:
    from tests.mock_server import serve_in_subprocess

    n = 30
    src = write_jsonl(tmp_path / "in.jsonl", _rows(n))
    price = ["--price", "m=1000,1000"]  # $0.001 a token: ~$0.13 a request
    with serve_in_subprocess(latency=0.05) as (_, url):
        full = _run(src, tmp_path / "full", url, *price, "-q")
        assert full.returncode == 0, full.stderr
        run = tmp_path / "run"
        first = _run(src, run, url, *price, "--budget", "1", "-q")
        m1 = json.loads((run / "manifest.json").read_text())
        second = _run(src, run, url, *price, "--budget", "2.5", "-q")
        m2 = json.loads((run / "manifest.json").read_text())
        last = _run(src, run, url, *price, "--budget", "100", "-q")
    assert first.returncode == 4, first.stderr
    assert "stopped before the --budget cap" in first.stderr and "exit code 4" in first.stderr
    assert m1["status"] == "budget" and m1["exit_code"] == 4
    # never more than the budget: the reservations counted what was in flight
    assert 0 < m1["usage_total"]["usd"] <= 1.0
    done1 = m1["counts"]["ok"]
    assert 0 < done1 < n and m1["counts"]["failed"] == 0  # the rest is still to do, not failed
    assert second.returncode == 4 and m2["usage_total"]["usd"] <= 2.5
    assert m2["counts"]["ok"] > done1
    assert last.returncode == 0, last.stderr
    rows = read_jsonl(run / "output.jsonl")
    assert rows == read_jsonl(tmp_path / "full" / "output.jsonl")  # nothing lost or doubled
    total = json.loads((run / "manifest.json").read_text())["usage_total"]
    whole = json.loads((tmp_path / "full" / "manifest.json").read_text())["usage_total"]
    assert total["requests"] == whole["requests"] == n  # each record sent once over 3 runs
    assert total["usd"] == pytest.approx(whole["usd"], abs=1e-6)


def test_budget_needs_a_price_and_the_token_cap_works_without_one(tmp_path: Path) -> None:
    from tests.mock_server import serve_in_subprocess

    src = write_jsonl(tmp_path / "in.jsonl", _rows(20))
    with serve_in_subprocess() as (_, url):
        refused = _run(src, tmp_path / "a", url, "--budget", "1")
        capped = _run(src, tmp_path / "b", url, "--max-tokens-total", "800", "-q")
    assert refused.returncode == 2 and "--budget needs a price for m@" in refused.stderr
    assert not (tmp_path / "a").exists()
    assert capped.returncode == 4, capped.stderr
    usage = json.loads((tmp_path / "b" / "manifest.json").read_text())["usage_total"]
    assert 0 < usage["prompt_tokens"] + usage["completion_tokens"] <= 800


def test_bad_price_option_exits_2_before_anything(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", _rows(2))
    result = synthcodec("complete", str(src), "-m", "fake:echo", "--price", "cheap",
                        "-o", str(tmp_path / "r"))
    assert result.returncode == 2 and "--price 'cheap'" in result.stderr
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------ servers without usage


def test_a_reply_without_usage_counts_its_reservation_as_spent() -> None:
    spend = Spend(budget_usd=1.0, max_tokens=10_000)
    meter = spend.meter("m", Price(1000.0, 2000.0))
    ticket = meter.reserve(_request(400, 100))  # ~104 prompt tokens, 100 out: ~$0.304
    meter.settle(ticket, Completion("ok"))  # no usage: 0 prompt / 0 completion tokens
    assert spend.usd == pytest.approx(0.104 + 0.2) and spend.tokens == 204
    assert spend.unreported == 1
    assert any("usage not reported; counted the worst case" in line for line in spend.lines())
    fields = spend.usage_fields()
    assert fields["usage_not_reported"].startswith("usage not reported; counted the worst case")
    assert fields["models"]["m"]["usage_not_reported"] == 1
    # A later invocation counts those tokens against --max-tokens-total too.
    later = Spend(max_tokens=300, before={"prompt_tokens": 0, "completion_tokens": 0,
                                          "worst_case_tokens": 204})
    with pytest.raises(BudgetReached, match="token cap"):
        later.meter("m", None).reserve(_request(400, 100))


def test_budget_holds_against_a_server_that_reports_no_usage(tmp_path: Path) -> None:
    """Each re-run with the same --budget used to send more paid requests (and record $0)."""
    from tests.mock_server import serve_in_subprocess

    src = write_jsonl(tmp_path / "in.jsonl", _rows(30))
    price = ["--price", "m=1000,1000"]  # ~$0.13 worst case a request
    run = tmp_path / "run"
    with serve_in_subprocess(omit_usage=True) as (_, url):
        first = _run(src, run, url, *price, "--budget", "1", "-q")
        m1 = json.loads((run / "manifest.json").read_text())
        again = _run(src, run, url, *price, "--budget", "1", "-q")
        m2 = json.loads((run / "manifest.json").read_text())
        capped = _run(src, tmp_path / "tok", url, "--max-tokens-total", "800", "-q")
        m3 = json.loads((tmp_path / "tok" / "manifest.json").read_text())
    assert first.returncode == 4, first.stderr
    assert "usage not reported; counted the worst case" in first.stderr
    assert m1["cost"]["usage_not_reported"].startswith("usage not reported; counted")
    sent = m1["usage_total"]["requests"]
    assert 0 < sent < 30 and 0 < m1["usage_total"]["usd"] <= 1.0
    # The same budget again: spent already, nothing more is sent.
    assert again.returncode == 4, again.stderr
    assert m2["usage_total"]["requests"] == sent
    assert m2["usage_total"]["usd"] == pytest.approx(m1["usage_total"]["usd"])
    assert capped.returncode == 4, capped.stderr
    assert 0 < m3["usage_total"]["worst_case_tokens"] <= 800
    assert m3["usage_total"]["requests"] < 30
    assert "usage not reported; counted the worst case" in capped.stderr
