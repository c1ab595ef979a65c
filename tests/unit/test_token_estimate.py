"""The prompt a request is reserved for, against what a real tokenizer makes of it (issue 73,
also found): four characters a token reserved a half or a quarter of text made of one-letter
words, symbols, digits or line breaks, which a hub user can write on purpose. Checked against
OpenAI's own tokenizers (tiktoken's cl100k and o200k, read offline from the files LiteLLM
ships), and through HTTP as a request a budget must refuse."""

from __future__ import annotations

import os
import random
import string
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from rsql_common.tokens import most_tokens, text_tokens
from tests.helpers import REPO, require
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.policy_proxy import Proxy, proxy_starter


@pytest.fixture(scope="module")
def tokenizers() -> list[Callable[[str], int]]:
    """OpenAI's two tokenizers, as token counters (no network: LiteLLM ships their files)."""
    require("tiktoken", reason="the 'test' extra (LiteLLM brings it)")
    require("litellm", reason="the 'test' extra (langchain-litellm)")
    import importlib.util

    spec = importlib.util.find_spec("litellm")
    assert spec is not None and spec.origin is not None
    files = Path(spec.origin).parent / "litellm_core_utils" / "tokenizers"
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(files))
    import tiktoken

    encodings = [tiktoken.get_encoding(name) for name in ("cl100k_base", "o200k_base")]
    return [lambda text, e=e: len(e.encode(text, disallowed_special=())) for e in encodings]


def real(tokenizers: list[Callable[[str], int]], text: str) -> int:
    return max(count(text) for count in tokenizers)


CRAFTED = {
    "one-letter words": "a " * 5000,
    "symbols": "}{" * 5000,
    "digits": "1234567890" * 500,
    "numbers in a table": "0.1234, 0.5678, 0.9012, " * 400,
    "digits and letters": "a1b2c3" * 1500,
    "line breaks": "\n" * 5000,
    "a word a line": "a\n" * 5000,
    "dots": "." * 5000,
    "markup": "<a>" * 3000,
    "emoji": "😀" * 2000,
    "accents": "é" * 4000,
}


@pytest.mark.parametrize("name", list(CRAFTED))
def test_crafted_text_is_reserved_at_least_as_a_tokenizer_counts_it(
    tokenizers: list[Callable[[str], int]], name: str
) -> None:
    text = CRAFTED[name]
    assert most_tokens(text) >= real(tokenizers, text)


def test_random_text_of_short_words_and_symbols_is_never_reserved_below_its_tokens(
    tokenizers: list[Callable[[str], int]],
) -> None:
    """Generated text of every short piece the worst case is for: one-letter words, symbols,
    digits, line breaks and runs of spaces, a few kinds at a time, in any order (bounded: 300
    texts). Runs of random letters are the limit ``most_tokens`` names, so no two letters
    touch here."""
    rng = random.Random(73)
    letters = list(string.ascii_letters)
    others = [*string.digits, *string.punctuation, "\n", " ", "  ", "    ", "é", "字"]
    for _ in range(300):
        kinds = rng.sample(others, rng.randint(1, 5))
        words = rng.random() < 0.7
        out: list[str] = []
        for _ in range(rng.randint(1, 1000)):
            if words and rng.random() < 0.5 and not (out and out[-1] in letters):
                out.append(rng.choice(letters))
            else:
                out.append(rng.choice(kinds))
        text = "".join(out)
        assert most_tokens(text) >= real(tokenizers, text), repr(text[:60])


def test_prose_and_code_are_reserved_close_to_their_tokens(
    tokenizers: list[Callable[[str], int]],
) -> None:
    """The worst case does not tax what users send every day too much: prose within a third of
    its tokens, code and JSON (their symbols, which tokenizers join) within 1.7 times."""
    for path, most in (
        ("README.md", 1.35),
        ("docs/architecture.md", 1.35),
        ("jupyter_server_ext/engine/core.py", 1.7),
        ("notebooks/demo.ipynb", 1.7),
    ):
        text = (REPO / path).read_text()
        truth = real(tokenizers, text)
        assert truth <= most_tokens(text) <= most * truth, path
    assert text_tokens("a " * 5000) == 2500  # the kernel's rough count is unchanged


@pytest.fixture
async def proxy(tmp_path: Path, fresh_provider: FakeProvider) -> AsyncIterator[Proxy]:
    async with proxy_starter(tmp_path, fresh_provider) as start:
        price = {"input": 1.0, "output": 1.0}
        from tests.helpers import upstreams_for

        upstreams = upstreams_for(
            fresh_provider, **{a: {"prices": {"fake-small": price}} for a in ("a1", "a2", "b1")}
        )
        yield await start(upstreams=upstreams, user_daily_budget_usd=0.08)


async def test_a_prompt_of_one_letter_words_cannot_be_reserved_at_half_its_cost(
    proxy: Proxy, fresh_provider: FakeProvider, tokenizers: list[Callable[[str], int]]
) -> None:
    """100,000 one-letter words are 100,000 tokens ($0.10 at $1 a million): at four characters
    a token they were reserved as 50,000 ($0.05) and a $0.08 day let them through."""
    text = "a " * 100_000
    assert real(tokenizers, text) >= 100_000
    body = {
        "model": "fake-small",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": text}],
    }
    status, answer = await proxy.call("POST", "v1/chat/completions", "tok-alice", body)
    assert status == 400 and "may cost up to $0.1" in answer["error"]["message"], answer
    assert fresh_provider.received == []
