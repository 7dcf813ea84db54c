"""The model-spec registry (llm/spec.py KINDS): every spec form maps to one kind, and the
rest of synthcodec asks that kind instead of reading a spec's prefix itself."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import synthcodec
from synthcodec.errors import UserError
from synthcodec.executors.ray import embedded
from synthcodec.experiment.steps import base_model_spec
from synthcodec.llm import FakeBackend, check_spec, load_backend
from synthcodec.llm.spec import (
    KIND,
    KINDS,
    MODEL_SPEC_HELP,
    find_kind,
    is_embedded,
    kind_of,
    price_names,
)
from synthcodec.prices import LOCAL, PriceBook
from synthcodec.session import RunOptions

# spec -> (kind, local, in_process, batchable, lm_eval target, path)
FORMS = {
    "local": ("local", True, True, False, "gguf", None),
    "": ("local", True, True, False, "gguf", None),
    "  local ": ("local", True, True, False, "gguf", None),
    "gguf:/models/m.gguf": ("gguf", True, True, False, "gguf", "/models/m.gguf"),
    "/models/m.gguf": ("gguf-file", True, True, False, None, "/models/m.gguf"),
    "gguf:hf:me/repo-GGUF/m.gguf": ("hub", True, True, False, None, None),
    "gguf:hf:me/repo-GGUF/m.gguf@v2": ("hub", True, True, False, None, None),
    "openai:gpt-4o-mini": ("openai", False, False, True, "api", None),
    "m@http://127.0.0.1:8000/v1": ("http", False, False, True, "api", None),
    "fake-gpt@http://127.0.0.1:8000/v1": ("http", False, False, True, "api", None),
    "hf:m@http://127.0.0.1:8000/v1": ("http", False, False, True, "api", None),
    "m@http://127.0.0.1:1/v1,http://127.0.0.1:2/v1": ("pool", False, False, False, "api", None),
    "hf:/adapters/kept": ("hf", True, True, False, "hf", "/adapters/kept"),
    "fake:echo": ("fake", True, False, False, None, None),
    "fake": ("fake", True, False, False, None, None),
}


@pytest.mark.parametrize("spec", list(FORMS))
def test_every_spec_form_maps_to_its_kind(spec: str) -> None:
    name, local, in_process, batchable, lm_eval, path = FORMS[spec]
    kind = kind_of(spec)
    assert kind is find_kind(spec) is KIND[name]
    assert (kind.local, kind.in_process, kind.batchable, kind.lm_eval) == (
        local, in_process, batchable, lm_eval)
    assert (kind.path(spec.strip()) if kind.path else None) == path


def test_every_kind_has_a_form_in_the_help_and_a_unique_name() -> None:
    assert len({k.name for k in KINDS}) == len(KINDS)
    for kind in KINDS:
        head = re.split(r"[\[@.]", kind.form)[0] if kind.name != "pool" else "NAME@URL1,URL2"
        assert head in MODEL_SPEC_HELP, kind.form


@pytest.mark.parametrize("spec", ["foo", "gpt-4o", "sk:thing", "local2"])
def test_an_unknown_spec_is_one_line_naming_it(spec: str) -> None:
    expected = f"unknown model spec {spec!r}. {MODEL_SPEC_HELP}"
    assert find_kind(spec) is None
    for ask in (kind_of, check_spec, load_backend):
        with pytest.raises(UserError) as err:
            ask(spec)
        assert str(err.value) == expected
        assert "\n" not in str(err.value)


def test_each_kind_checks_its_own_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nope.gguf"
    with pytest.raises(UserError, match=f"no such GGUF file {re.escape(str(missing))}$"):
        check_spec(f"gguf:{missing}")
    with pytest.raises(UserError, match="no such GGUF file"):
        check_spec(str(missing))
    with pytest.raises(UserError, match="no such model directory"):
        check_spec(f"hf:{tmp_path / 'none'}")
    check_spec(f"hf:{tmp_path}")  # a directory that exists: loads nothing yet
    with pytest.raises(UserError, match="unknown fake model 'fake:wise'"):
        check_spec("fake:wise")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(UserError, match=r"needs \$OPENAI_API_KEY"):
        check_spec("openai:gpt-4o-mini")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    check_spec("openai:gpt-4o-mini")
    with pytest.raises(UserError, match=r"\$NOT_SET_HERE, which is not set"):
        check_spec("m@http://127.0.0.1:9/v1#key=NOT_SET_HERE")


def test_each_kind_loads_its_backend() -> None:
    fake = load_backend(" fake:echo ")
    assert isinstance(fake, FakeBackend) and fake.identity == "fake:echo"
    served = load_backend("m@http://127.0.0.1:9/v1")
    assert type(served).__name__ == "OpenAIHTTPBackend"
    assert served.identity == "m@http://127.0.0.1:9/v1"
    pool = load_backend("m@http://127.0.0.1:2/v1,http://127.0.0.1:1/v1")
    assert type(pool).__name__ == "PoolBackend"
    assert pool.identity == "m@http://127.0.0.1:1/v1,http://127.0.0.1:2/v1"


def test_price_keys_come_from_the_kind() -> None:
    assert price_names("openai:gpt-4o-mini") == ("gpt-4o-mini", "openai:gpt-4o-mini")
    assert price_names("m@http://u:pw@h:1/v1#key=K") == (
        "m@http://***@h:1/v1#key=K", "m@http://***@h:1/v1", "m")
    assert price_names("whatever") == ("whatever",)
    book = PriceBook.build(price=["1,2"])  # priced: every model that is not local
    assert book.price("judge", "fake:echo") is LOCAL
    assert book.price("judge", "hf:/adapters/kept") is LOCAL
    assert book.price("judge", "fake-gpt@http://127.0.0.1:1/v1") is not LOCAL
    assert book.price("judge", "openai:gpt-4o-mini").input == 1.0


def test_batch_ray_and_experiment_ask_the_kind() -> None:
    options = RunOptions(batch=True)
    options.check_batch({"judge": "m@http://127.0.0.1:1/v1", "other": "openai:gpt-4o-mini"})
    for spec in ("m@http://127.0.0.1:1/v1,http://127.0.0.1:2/v1", "local", "fake:echo", "foo"):
        with pytest.raises(UserError, match="--batch needs an OpenAI-compatible server"):
            options.check_batch({"judge": spec})
    assert embedded({"m": "local"}, {}) and embedded({"m": "hf:/x"}, {})
    assert not embedded({"m": "fake:echo", "n": "m@http://h:1/v1"}, {})
    assert not embedded({"m": "local"}, {"m": object()})  # given as a backend: not loaded here
    assert is_embedded(" local ") and is_embedded("") and not is_embedded("gguf:/m.gguf")
    assert base_model_spec("local") == "local"
    assert base_model_spec("gguf:/m.gguf") == "gguf:/m.gguf"
    assert base_model_spec("hf:/models/base") == "hf:/models/base"
    assert base_model_spec("/m.gguf") == "hf:/m.gguf"
    assert base_model_spec("/models/base") == "hf:/models/base"


# --- Architectural guard: prefixes are decoded in llm/spec.py only ----------------------

REGISTRY = Path(synthcodec.__file__).parent / "llm" / "spec.py"
PREFIX = r"""["'](?:gguf:|hf:|openai:|fake|local\b)"""
DECODES = re.compile(
    r"\.(?:startswith|removeprefix|endswith|partition)\(\s*\(?(?:[^()]*,\s*)?" + PREFIX
    + r"""|(?:==|!=)\s*["']local["']|\bin\s+\(\s*["']local["']""")


def test_the_guard_sees_a_decode() -> None:
    for line in ('spec.startswith("gguf:")', "s.removeprefix('hf:')",
                 'spec.startswith(("x", "fake"))', 'if spec == "local":',
                 'spec.strip() in ("local", "")', 'spec.startswith("openai:")'):
        assert DECODES.search(line), line
    for line in ('model: str = "local"', 'f"hf:{adapter}"', 'path.endswith(".gguf")'):
        assert not DECODES.search(line), line


def test_spec_prefixes_are_decoded_in_the_registry_only() -> None:
    root = REGISTRY.parents[1]
    found = [f"{path.relative_to(root)}:{n}: {line.strip()}"
             for path in sorted(root.rglob("*.py")) if path != REGISTRY
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if DECODES.search(line)]
    assert found == [], "ask llm.spec.kind_of(spec) instead:\n" + "\n".join(found)
