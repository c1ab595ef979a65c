"""Audio billed as the provider bills it. OpenAI's audio models bill the sound they hear and
speak at their own rates, several times the text ones (gpt-4o-audio-preview: $40 and $80 a
million audio tokens beside $2.50 and $10 for text), and say how many tokens were audio in the
usage's ``prompt_tokens_details`` and ``completion_tokens_details``. A model priced with
``audio_input`` and ``audio_output`` is reserved and charged at them; under a budget, audio of a
model priced without them is refused, naming the field. Over HTTP, through the hub service's
handlers, in front of a loopback provider that hears and speaks as OpenAI's models do."""

from __future__ import annotations

import base64
import io
import json
import re
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tornado import httputil

from jupyter_server_ext.config.proxy import RSQLProxy
from jupyter_server_ext.engine import ConfigError
from tests.helpers import upstreams_for
from tests.helpers.fake_provider import AUDIO_BYTES_PER_TOKEN, FakeProvider
from tests.helpers.policy_proxy import Proxy, proxy_starter

# fake-small bills as gpt-4o-audio-preview does; fake-large is priced for text alone
AUDIO = {"input": 2.5, "output": 10.0, "audio_input": 40.0, "audio_output": 80.0}
TEXT = {"input": 2.5, "output": 10.0}
PRICES = {"prices": {"fake-small": AUDIO, "fake-large": TEXT}}


def recording(seconds: float) -> str:
    """A WAV recording of `seconds` of 16 kHz 16-bit mono sound, as base64."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16_000)
        size = int(seconds * 32_000)  # bytes a second
        w.writeframes((bytes(range(256)) * (size // 256 + 1))[:size])
    return base64.b64encode(out.getvalue()).decode()


SOUND = recording(2.5)  # 80,000 bytes of sound: 25 tokens heard at the fake's rate
assert AUDIO_BYTES_PER_TOKEN * 25 == 80_000


def spoken_question(
    model: str = "fake-small", sound: str = SOUND, kind: str = "wav", **extra: Any
) -> dict[str, Any]:
    """A question asked aloud (a recording and a line of text), answered aloud."""
    return {
        "model": model,
        "modalities": ["text", "audio"],
        "audio": {"voice": "alloy", "format": "wav"},
        "max_completion_tokens": 100,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What does this query do?"},
                    {"type": "input_audio", "input_audio": {"data": sound, "format": kind}},
                ],
            }
        ],
        **extra,
    }


def audio_bill(usage: dict[str, Any]) -> float:
    """What the provider bills for `usage` at AUDIO's rates."""
    heard = usage["prompt_tokens_details"]["audio_tokens"]
    spoken = usage["completion_tokens_details"]["audio_tokens"]
    return (
        (usage["prompt_tokens"] - heard) * AUDIO["input"]
        + heard * AUDIO["audio_input"]
        + (usage["completion_tokens"] - spoken) * AUDIO["output"]
        + spoken * AUDIO["audio_output"]
    ) / 1e6


@pytest.fixture
async def start(tmp_path: Path, fresh_provider: FakeProvider) -> AsyncIterator[Any]:
    """`start(**config)`: the service in front of the provider's keys, each pricing both
    models, every user under a daily budget (`user_daily_budget_usd`, $50 by default)."""
    upstreams = upstreams_for(fresh_provider, a1=PRICES, a2=PRICES, b1=PRICES)
    async with proxy_starter(tmp_path, fresh_provider) as begin:

        async def go(**config: Any) -> Proxy:
            config.setdefault("user_daily_budget_usd", 50.0)
            config.setdefault("upstreams", upstreams)
            return await begin(**config)

        yield go


async def post(
    p: Proxy, body: dict[str, Any], path: str = "v1/chat/completions"
) -> tuple[int, httputil.HTTPHeaders, bytes]:
    """A request of alice's (a student, under the budget): status, headers (any case), body."""
    res = await p.send("POST", path, "tok-alice", body)
    return res.code, res.headers, res.body or b""


def streamed_usage(raw: bytes) -> dict[str, Any]:
    """The usage chunk of a streamed answer (the client asked for it)."""
    chunks = [
        json.loads(line[len(b"data: ") :])
        for line in raw.splitlines()
        if line.startswith(b"data: {")
    ]
    (usage,) = [c["usage"] for c in chunks if c.get("usage")]
    return usage


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_sound_heard_and_spoken_is_charged_at_the_audio_rates(
    start, fresh_provider: FakeProvider, stream: bool
) -> None:
    p = await start()
    extra = {"stream": True, "stream_options": {"include_usage": True}} if stream else {}
    status, head, raw = await post(p, spoken_question(**extra))
    assert status == 200, raw[:300]
    if stream:
        usage = streamed_usage(raw)
        assert b'"transcript"' in raw  # the answer came spoken
    else:
        answer = json.loads(raw)
        usage = answer["usage"]
        assert answer["choices"][0]["message"]["audio"]["transcript"]
        assert float(head["X-RSQL-Cost-USD"]) == pytest.approx(usage["cost_usd"], abs=1e-8)
    assert usage["prompt_tokens_details"]["audio_tokens"] == 25
    assert usage["completion_tokens_details"]["audio_tokens"] > 0
    bill = audio_bill(usage)
    assert usage["cost_usd"] == pytest.approx(bill, abs=1e-8)
    # what the provider billed, to the token: at the text rates it would be a fraction
    assert fresh_provider.received[-1].billed_tokens == usage["total_tokens"]
    text_rates = (usage["prompt_tokens"] * 2.5 + usage["completion_tokens"] * 10.0) / 1e6
    assert bill > 3 * text_rates
    # the admin's row says why it was dear: how many of its tokens were sound
    await p.engine.usage.flush()
    _, rows = await p.call("GET", "admin/users/alice/activity?limit=1", "tok-admin")
    (row,) = rows["activity"]
    assert row["cost_usd"] == pytest.approx(bill, abs=1e-8)
    assert (row["audio_input_tokens"], row["audio_output_tokens"]) == (
        usage["prompt_tokens_details"]["audio_tokens"],
        usage["completion_tokens_details"]["audio_tokens"],
    )


async def test_audio_of_a_model_without_audio_rates_is_refused_under_a_budget(
    start, fresh_provider: FakeProvider
) -> None:
    p = await start()
    heard = spoken_question("fake-large")
    del heard["modalities"], heard["audio"]
    for body, field, rate in (
        (heard, "messages[0].content[1]", "audio_input"),
        ({**spoken_question("fake-large"), "messages": [{"role": "user", "content": "Hi"}]},
         "modalities", "audio_output"),
        # an earlier spoken answer the provider hears again
        ({"model": "fake-large", "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "audio": {"id": "audio_abc123"}},
            {"role": "user", "content": "And again?"},
        ]}, "messages[1].audio", "audio_input"),
    ):  # fmt: skip
        status, _, raw = await post(p, body)
        assert status == 400, raw[:300]
        error = json.loads(raw)["error"]
        assert error["code"] == "audio_not_priced" and error["param"] == field, error
        assert f'"{rate}"' in error["message"] and "'fake-large'" in error["message"], error
    assert fresh_provider.received == []
    # the same model's text goes on, and a model with audio rates hears
    status, _, raw = await post(
        p, {"model": "fake-large", "messages": [{"role": "user", "content": "Hi"}]}
    )
    assert status == 200, raw[:300]
    status, _, raw = await post(p, spoken_question())
    assert status == 200, raw[:300]


async def test_without_a_budget_or_with_unpriced_costs_let_through_audio_goes_on(
    start, fresh_provider: FakeProvider
) -> None:
    p = await start(user_daily_budget_usd=None)
    status, _, raw = await post(p, spoken_question("fake-large"))
    assert status == 200, raw[:300]
    p = await start(unpriced_models="free")
    status, _, raw = await post(p, spoken_question("fake-large"))
    assert status == 200, raw[:300]
    assert len(fresh_provider.received) == 2
    usage = json.loads(raw)["usage"]  # the admin let what has no price through: as text
    text = usage["prompt_tokens"] * TEXT["input"] + usage["completion_tokens"] * TEXT["output"]
    assert usage["cost_usd"] == pytest.approx(text / 1e6, abs=1e-8)


async def test_a_spoken_answer_is_reserved_at_the_audio_output_rate(
    start, fresh_provider: FakeProvider
) -> None:
    """4,000 completion tokens: $0.04 as text, $0.32 as sound. A $0.25 day takes the text
    answer and refuses the spoken one before it reaches the provider."""
    p = await start(user_daily_budget_usd=0.25)
    text = {"model": "fake-small", "max_completion_tokens": 4000,
            "messages": [{"role": "user", "content": "Hi"}]}  # fmt: skip
    status, _, raw = await post(p, text)
    assert status == 200, raw[:300]
    asked = len(fresh_provider.received)
    spoken = {**text, "modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"}}
    status, _, raw = await post(p, spoken)
    assert status == 400, raw[:300]
    error = json.loads(raw)["error"]
    assert (
        error["code"] == "over_budget"
        and "more than the whole user daily budget" in (error["message"])
    ), error
    assert len(fresh_provider.received) == asked


async def test_a_spoken_question_falls_back_only_to_a_model_that_prices_audio(
    start, fresh_provider: FakeProvider
) -> None:
    """When its model's account is out of capacity, a text question falls back to the
    fallback's model (priced for text), a spoken one does not: its sound would be charged as
    text."""
    small = {"models": ["fake-small"], "limits": ["1/minute"], "prices": {"fake-small": AUDIO}}
    p = await start(
        upstreams=upstreams_for(
            fresh_provider, a1=small, a2=small, b1={"models": ["fake-large"], **PRICES}
        ),
        fallback_model="b1",
        fallback_on=["capacity"],
        max_wait_seconds=0.3,
    )
    text = {"model": "fake-small", "messages": [{"role": "user", "content": "Hi"}]}
    assert (await post(p, text))[0] == 200  # the account's one request a minute
    status, head, raw = await post(p, spoken_question())
    assert status == 429 and "X-RSQL-Fallback" not in head, raw[:300]
    status, head, raw = await post(p, text)
    assert status == 200 and head["X-RSQL-Fallback"] == "b1", raw[:300]
    assert [r.body["model"] for r in fresh_provider.received] == ["fake-small", "fake-large"]


@pytest.mark.parametrize(
    ("price", "says"),
    [
        (
            {"input": 1, "output": 1, "audio_input": "40"},
            "got {'input': 1, 'output': 1, 'audio_input': '40'}",
        ),
        (
            {"input": 1, "output": 1, "audio_output": -1},
            "'audio_output']: prices cannot be negative",
        ),
        ({"input": 1, "output": 1, "audio_inpt": 40}, "'audio_inpt': 40"),
    ],
)
def test_a_mistyped_audio_rate_stops_start_up(
    fresh_provider: FakeProvider, price: dict[str, Any], says: str
) -> None:
    upstreams = upstreams_for(fresh_provider, a1={"prices": {"fake-small": price}})
    with pytest.raises(ConfigError, match=re.escape(says)):
        RSQLProxy(upstreams=upstreams).engine_settings()


def test_an_audio_count_not_given_or_no_whole_number_counts_its_side_as_audio() -> None:
    """A provider's (or a crafted upstream's) usage that does not say, in a whole number, how
    much of the sound a request sent or asked for was audio is charged as if all of that side
    were, the dearer reading, never as if none were."""
    from jupyter_server_ext.engine.replies import audio_counts

    usage: dict[str, Any] = {"prompt_tokens": 120, "completion_tokens": 30}
    assert audio_counts(usage, (False, False)) == (0, 0)  # text: nothing says audio
    assert audio_counts(usage, (True, False)) == (120, 0)  # sound sent, its count not said
    assert audio_counts(usage, (True, True)) == (120, 30)
    usage["prompt_tokens_details"] = {"cached_tokens": 0, "audio_tokens": 25}
    usage["completion_tokens_details"] = {"audio_tokens": 24}
    assert audio_counts(usage, (True, True)) == (25, 24)
    usage["prompt_tokens_details"]["audio_tokens"] = "25"
    usage["completion_tokens_details"]["audio_tokens"] = -3
    assert audio_counts(usage, (False, False)) == (120, 30)


async def test_a_recording_is_reserved_by_the_seconds_it_holds_at_the_audio_rate(
    start, fresh_provider: FakeProvider
) -> None:
    """On a $0.25 day: 15 seconds of WAV (481 tokens of sound at most, $0.02) are heard, where
    their base64 text counted as text would have been reserved past the day; 300 KB of MP3
    (up to 300 seconds at MPEG's lowest bit rate: $0.38 of sound, $0.02 as text) are refused
    before the provider; so is a turn that has an earlier spoken answer heard again (up to
    16,384 tokens of sound, $0.66)."""
    p = await start(user_daily_budget_usd=0.25)
    small = {"max_completion_tokens": 20}
    status, _, raw = await post(p, spoken_question(sound=recording(15), **small))
    assert status == 200, raw[:300]
    assert fresh_provider.received[-1].body["messages"][0]["content"][1]["input_audio"]
    asked = len(fresh_provider.received)
    mp3 = base64.b64encode(b"\xff\xfb" * 150_000).decode()
    again = spoken_question(**small)
    again["messages"] += [
        {"role": "assistant", "audio": {"id": "audio_abc123"}},
        {"role": "user", "content": "Say it again?"},
    ]
    for body in (spoken_question(sound=mp3, kind="mp3", **small), again):
        status, _, raw = await post(p, body)
        assert status == 400, raw[:300]
        error = json.loads(raw)["error"]
        assert error["code"] == "over_budget", error
    assert len(fresh_provider.received) == asked


async def test_an_earlier_spoken_answer_heard_again_is_charged_at_the_audio_rate(
    start, fresh_provider: FakeProvider
) -> None:
    p = await start()
    status, _, raw = await post(p, spoken_question())
    assert status == 200, raw[:300]
    first = json.loads(raw)
    said = first["choices"][0]["message"]["audio"]
    spoken = first["usage"]["completion_tokens_details"]["audio_tokens"]
    follow = spoken_question()
    follow["messages"] += [
        {"role": "assistant", "audio": {"id": said["id"]}},
        {"role": "user", "content": "Say it more slowly?"},
    ]
    status, _, raw = await post(p, follow)
    assert status == 200, raw[:300]
    usage = json.loads(raw)["usage"]
    # the recording again, and the earlier answer's sound: both heard, both billed as audio
    assert usage["prompt_tokens_details"]["audio_tokens"] == 25 + spoken
    assert usage["cost_usd"] == pytest.approx(audio_bill(usage), abs=1e-8)


async def test_a_spoken_stream_that_breaks_off_is_charged_its_limit_of_sound(
    start, fresh_provider: FakeProvider
) -> None:
    """A stream that breaks before its usage is charged what was generated, one token a
    chunk; a chunk of sound carries many, so a spoken one is charged its limit at the audio
    rate (100 tokens: $0.008), never a few chunks'."""
    for alias in ("a1", "a2", "b1"):
        fresh_provider.set_fault(alias, "die_mid_stream")
    p = await start()
    body = spoken_question(stream=True, max_completion_tokens=100)
    status, _, raw = await post(p, body)
    assert status == 200 and b"broke off" in raw, raw[-300:]
    res = await p.client.fetch(p.base + "me", headers={"Authorization": "Bearer tok-alice"})
    spent = json.loads(res.body)["budget"]["spent_usd"]
    # the prompt, reserved as sent (the recording at the audio rate), and the limit of sound
    prompt = 2.6 * 32 * AUDIO["audio_input"] / 1e6
    assert spent >= prompt + 100 * AUDIO["audio_output"] / 1e6, spent


@pytest.mark.parametrize("native", [True, False], ids=["sent-as-it-came", "translated"])
async def test_a_responses_request_with_sound_is_held_to_the_audio_rates(
    start, fresh_provider: FakeProvider, native: bool
) -> None:
    """The Responses API carries sound too (an ``input_audio`` part in ``input``): to an
    upstream that serves the API itself or through chat completions, a model priced without
    audio rates refuses it under a budget, naming where it is."""
    served = {**PRICES, "responses_api": native}
    p = await start(upstreams=upstreams_for(fresh_provider, a1=served, a2=served, b1=served))
    body = {
        "model": "fake-large",
        "input": [
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "What does this query do?"},
                    {"type": "input_audio", "input_audio": {"data": SOUND, "format": "wav"}},
                ],
            }
        ],
    }
    status, _, raw = await post(p, body, "v1/responses")
    assert status == 400, raw[:300]
    error = json.loads(raw)["error"]
    assert error["code"] == "audio_not_priced", error
    assert error["param"] == ("input[0].content[1]" if native else "messages[0].content[1]")
    assert fresh_provider.received == []


def test_a_recordings_reservation_is_its_longest_reading() -> None:
    """By what the file says, at 32 tokens a second (and a token or two for the header and the
    rounding): 2.5 seconds of WAV; a header that states a byte rate above what its sample
    rate and frame size make is read at the lower (the longer sound); data that is no WAV
    file, or a format with no length to read, is counted as text (None here); MP3 at MPEG's
    lowest bit rate."""
    from jupyter_server_ext.engine.bodies.media import AUDIO_TOKENS_PER_SECOND, audio_tokens

    def tokens(data: str, kind: str = "wav") -> int | None:
        return audio_tokens({"type": "input_audio", "input_audio": {"data": data, "format": kind}})

    def seconds(data: str, kind: str = "wav") -> float:
        found = tokens(data, kind)
        assert found is not None, "counted as text"
        return found / AUDIO_TOKENS_PER_SECOND

    def wav(raw: bytes | bytearray) -> str:
        return base64.b64encode(raw).decode()

    assert 2.5 < seconds(SOUND) <= 2.6
    raw = bytearray(base64.b64decode(SOUND))
    raw[28:32] = (32_000 * 8).to_bytes(4, "little")  # claims 8x the bytes a second it holds
    assert 2.5 < seconds(wav(raw)) <= 2.6
    raw[24:28] = (16_000 * 8).to_bytes(4, "little")  # and a sample rate to match: 8x shorter
    assert 2.5 / 8 < seconds(wav(raw)) <= 2.6 / 8 + 0.05
    raw[24:28] = (16_000).to_bytes(4, "little")
    raw[28:32] = (32_000 * 8).to_bytes(4, "little")
    raw[32:34] = (0xFFFF).to_bytes(2, "little")  # a frame size that lies, with the byte rate
    assert 2.5 < seconds(wav(raw)) <= 2.6  # a frame is its channels' samples: 2 bytes
    raw[20:22] = (0x11).to_bytes(2, "little")  # IMA ADPCM: no length its header states truly
    assert tokens(wav(raw)) is None
    assert tokens(wav(b"ID3" + bytes(997))) is None
    assert tokens(SOUND, "flac") is None
    assert tokens("!!not base64!!") is None
    assert 10 < seconds(wav(bytes(10_000)), "mp3") <= 10.1


async def test_a_part_is_billed_as_its_type_says_whatever_text_it_also_holds(
    start, fresh_provider: FakeProvider
) -> None:
    """A recording that also carries a "text" is reserved as the recording, not as the text:
    on a $0.01 day at $40 a million, 5 seconds of sound ($0.0064, and $0.0016 for the answer)
    go, and 15 seconds ($0.019) are refused before the provider, with or without the text."""
    p = await start(user_daily_budget_usd=0.01)
    limit = {"max_completion_tokens": 20}
    for text in (None, "x"):
        body = spoken_question(sound=recording(15), **limit)
        if text is not None:
            body["messages"][0]["content"][1]["text"] = text
        status, _, raw = await post(p, body)
        assert status == 400, raw[:300]
        assert json.loads(raw)["error"]["code"] == "over_budget"
    assert fresh_provider.received == []
    status, _, raw = await post(p, spoken_question(sound=recording(5), **limit))
    assert status == 200, raw[:300]


async def test_the_openai_sdk_hears_and_speaks_through_a_model_name_of_the_hubs(
    start, fresh_provider: FakeProvider
) -> None:
    """The official SDK, a model name the hub gives (not the provider's own): its spoken answer
    and its audio usage come through, charged at the audio rates; the same model priced for
    text alone is an error the SDK raises with its code."""
    import openai

    voiced = {"models": {"class-voice": "fake-small", "class-text": "fake-large"},
              "prices": {"class-voice": AUDIO, "class-text": TEXT}}  # fmt: skip
    served = upstreams_for(fresh_provider, a1=voiced, a2=voiced, b1=voiced)
    p = await start(upstreams=served, default_model="class-voice")
    client = openai.AsyncOpenAI(base_url=p.base + "v1", api_key="tok-alice", max_retries=0)
    body = spoken_question("class-voice")
    answer = await client.chat.completions.create(
        model="class-voice",
        modalities=["text", "audio"],
        audio={"voice": "alloy", "format": "wav"},
        messages=body["messages"],
        max_completion_tokens=100,
    )
    assert (
        answer.model == "class-voice" and fresh_provider.received[-1].body["model"] == "fake-small"
    )
    assert (
        answer.choices[0].message.audio is not None and answer.choices[0].message.audio.transcript
    )
    usage = answer.model_dump()["usage"]
    assert usage["completion_tokens_details"]["audio_tokens"] > 0
    assert usage["cost_usd"] == pytest.approx(audio_bill(usage), abs=1e-8)
    with pytest.raises(openai.BadRequestError) as refused:
        await client.chat.completions.create(model="class-text", messages=body["messages"])
    assert refused.value.code == "audio_not_priced", refused.value.body
    await client.close()
