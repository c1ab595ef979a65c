"""What images and files in a prompt may cost, in tokens, at most: a reservation is the budget's
only hold on a request, so it must not be cheaper than what the provider can bill.

Images: OpenAI bills an image by its size and the model (docs: "Images and vision",
calculating costs). At high detail the tile models take at most 8 tiles (a 2048 x 768 image),
1,445 tokens on gpt-4o; gpt-4o-mini bills each tile 33 times over, up to 48,169 tokens; the
patch models (gpt-4.1-mini and -nano, o4-mini, gpt-5-mini and -nano) at most 1,536 patches
times their multiplier, 3,779 on the nano models. Claude takes about 1,600 at most and Gemini a
few thousand. So 3,000 covers every model but those named in ``IMAGE_TOKENS_BY_MODEL``.

PDFs: providers read each page as text and as an image (OpenAI; Anthropic 1,500 to 3,000 text
tokens a page besides its image), so a PDF costs by its pages, which a small file can hold many
of (one page object drawn a hundred times). Pages are counted from the file's own page tree
(``/Count``) and page objects, looking into compressed object streams as far as a budget lets;
a file whose pages cannot be seen is reserved the providers' most (100 pages). Inflating and
scanning is CPU work a crafted file makes large (an 11 KB part inflating to 8 MiB), so the
budget is per request, not per file, and a request is counted on the event loop only within a
small one (``INLINE_*``); past it, in the worker process (``count_files``).

Audio: OpenAI's audio models bill the sound they hear and speak at audio rates, several times
the text ones; which fields of a request carry or ask for sound (``audio_fields``) decides
whether it is reserved and charged at them. Providers bill sound by its length (Gemini 32
tokens a second, OpenAI about 10), so a recording is reserved by the most seconds it can hold
(``audio_tokens``): a WAV file of PCM-like sound by its sample rate and size, an MP3 at
MPEG's lowest bit rate; another format, or a header that cannot be read, by its data's size as
text; a recording a server fetches by address as an hour. An earlier spoken answer the provider
hears again is reserved as the longest answer an audio model gives.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import functools
import itertools
import re
import zlib
from dataclasses import dataclass
from typing import Any

from ..errors import OverBudget

IMAGE_TOKENS = 3000  # the most an image costs on models not listed below
IMAGE_TOKENS_BY_MODEL = {"*4o-mini*": 48_169, "*nano*": 3_779}
WORST_IMAGE_TOKENS = max(IMAGE_TOKENS, *IMAGE_TOKENS_BY_MODEL.values())
PAGE_TEXT_TOKENS = 3000  # a dense page's text, on top of its image
MAX_PAGES = 100  # the most pages OpenAI and Anthropic read of one PDF
MAX_FILE_PARTS = 20  # file parts in one request
# bytes inflated (read and written) to count pages, at most, per request: in the worker, and on
# the event loop (with the PDFs' own bytes scanned), a few milliseconds' worth
INFLATE_BYTES = 16 * 2**20
INLINE_INFLATE_BYTES = 2**20
INLINE_PDF_BYTES = 256 * 2**10
MAX_OBJECT_STREAMS = 256  # object streams looked into per request
# "/ObjStm" markers read per file: a file of nothing but markers (2.9 MB of "/ObjStm>>") is
# 320,000 of them; past this many its pages cannot all be seen within the budget
MAX_MARKERS = 4 * MAX_OBJECT_STREAMS

_DATA_URL = re.compile(r"data:([^;,]*)(?:;[^,]*)?,", re.S)
_PAGE = re.compile(rb"/Type\s*/Page(?![A-Za-z])")
_COUNT = re.compile(rb"/Count\s+(\d{1,7})")
_PAGES_DICT = re.compile(rb"/Type\s*/Pages(?![A-Za-z])")
# where an object stream's data starts: the first such start within _DICT_BYTES after its
# /ObjStm, each found once in a pass over the file (``pdf_pages``). Searched from every marker,
# _DICT_BYTES were read per marker: 4.8 s of the shared worker for 2.9 MB of "/ObjStm>>"
_STREAM_START = re.compile(rb">>\s{0,32}stream\r?\n")
_DICT_BYTES = 4096


@functools.lru_cache(maxsize=512)  # a model name's patterns, matched once (per request: 15 µs)
def image_tokens(model: str) -> int:
    """The most one image may cost on `model` (a provider's own model name)."""
    name = model.lower()
    return max(
        [IMAGE_TOKENS]
        + [
            tokens
            for pattern, tokens in IMAGE_TOKENS_BY_MODEL.items()
            if fnmatch.fnmatch(name, pattern)
        ]
    )


def billed_image_tokens(names: list[str]) -> int:
    """The most one image may cost under any of `names` (the provider models a public name
    stands for); the most any model bills when none is known."""
    return max(map(image_tokens, names), default=WORST_IMAGE_TOKENS)


def inline_file(part: dict[str, object]) -> str | None:
    """A `file` part's inline data (a data URL or base64), or None (a file id)."""
    file = part.get("file")
    data = file.get("file_data") if isinstance(file, dict) else None
    return data if isinstance(data, str) else None


@dataclass
class Budget:
    """What one request's page counts may still inflate and look into."""

    inflate: int = INFLATE_BYTES
    streams: int = MAX_OBJECT_STREAMS
    inline: bool = False  # on the event loop: running out means "count it in the worker"


def pdf_tokens(files: list[tuple[str, int]], page_tokens: int, inline: bool = False) -> int:
    """What inline PDFs (data, tokens by their size) may cost beyond their size: by their pages,
    each its text and image (`page_tokens`), within one budget for the request. `inline`: on
    the event loop, within a small budget; raises ``OverBudget`` past it."""
    budget = Budget(INLINE_INFLATE_BYTES, inline=True) if inline else Budget()
    if inline and sum(len(data) for data, _ in files) > INLINE_PDF_BYTES * 4 // 3:
        raise OverBudget
    extra = 0
    for data, json_tokens in files:
        head = _DATA_URL.match(data[:200])
        raw = data[head.end() :] if head is not None else data
        try:
            pdf = base64.b64decode(raw, validate=False)
        except (binascii.Error, ValueError):
            continue  # not base64: the provider refuses it
        extra += max(0, pdf_pages(pdf, budget) * page_tokens - json_tokens)
    return extra


def pdf_pages(pdf: bytes, budget: Budget | None = None) -> int:
    """How many pages `pdf` may have: the largest of its page trees' ``/Count`` and its page
    objects, in the file and in the object streams it compresses; ``MAX_PAGES`` when neither
    can be seen (a page tree inside a stream past the budget); at most ``MAX_PAGES``."""
    budget = budget or Budget()
    texts = [pdf]
    view = memoryview(pdf)
    at = pdf.find(b"/ObjStm")
    # the first stream start at or after the last marker searched from, kept while later
    # markers come before it: each search begins past the one before, so together they read the
    # file once (no match left: `ahead` None with `searched` set)
    ahead: re.Match[bytes] | None = None
    searched = False
    markers = 0
    while at >= 0:
        markers += 1
        if markers > MAX_MARKERS:
            if budget.inline:
                raise OverBudget
            return MAX_PAGES  # more object streams than are read: the page tree may be unseen
        if not searched or (ahead is not None and ahead.start() < at):
            ahead, searched = _STREAM_START.search(pdf, at), True
        start = ahead if ahead is not None and ahead.end() <= at + _DICT_BYTES else None
        at = pdf.find(b"/ObjStm", at + 7)
        if start is None:
            continue
        if budget.inflate <= 0 or budget.streams <= 0:
            if budget.inline:
                raise OverBudget
            return MAX_PAGES  # a stream past the budget may hold the page tree
        budget.streams -= 1
        chunk = view[start.end() : start.end() + budget.inflate]
        inflater = zlib.decompressobj()
        try:
            text = inflater.decompress(chunk, budget.inflate)
        except zlib.error:
            continue
        # input read counts as well as output: empty blocks read much and write nothing
        read = len(chunk) - len(inflater.unconsumed_tail) - len(inflater.unused_data)
        cut = len(text) >= budget.inflate or start.end() + len(chunk) < len(pdf)
        budget.inflate -= read + len(text)
        if cut and not inflater.eof:  # the budget ended inside it: the rest is unseen
            if budget.inline:
                raise OverBudget
            return MAX_PAGES
        texts.append(text)
    found = 0
    for text in texts:
        found = max(found, sum(1 for _ in itertools.islice(_PAGE.finditer(text), MAX_PAGES)))
        if found < MAX_PAGES and _PAGES_DICT.search(text):
            found = max([found, *map(int, _COUNT.findall(text))])
        if found >= MAX_PAGES:
            break
    return min(MAX_PAGES, found) if found else MAX_PAGES


def audio_fields(body: dict[str, Any], turns: str = "messages") -> tuple[str, str]:
    """(the first field that sends sound, the field that asks for a spoken answer), '' for
    none: an ``input_audio`` part, or an assistant turn's ``audio`` (an earlier spoken answer
    the provider hears again), among `body`'s `turns` (a chat completion's ``messages``, a
    Responses request's ``input``); ``modalities`` with "audio", or ``audio`` (voice and
    format)."""
    heard = ""
    items = body.get(turns)
    for i, m in enumerate(items if isinstance(items, list) else []):
        if not isinstance(m, dict):
            continue
        if isinstance(m.get("audio"), dict):
            heard = f"{turns}[{i}].audio"
        content = m.get("content")
        for j, part in enumerate(content if isinstance(content, list) else []):
            if isinstance(part, dict) and part.get("type") in ("input_audio", "audio_url"):
                heard = heard or f"{turns}[{i}].content[{j}]"  # audio_url: vLLM's
        if heard:
            break
    modalities = body.get("modalities")
    if isinstance(modalities, list) and "audio" in modalities:
        return heard, "modalities"
    return heard, "audio" if body.get("audio") is not None else ""


# the most tokens a second of sound is billed (Gemini's 32; OpenAI's models about 10)
AUDIO_TOKENS_PER_SECOND = 32
# MP3's lowest bit rate, 8 kbit/s (MPEG-2.5 layer III; a "free format" stream, which few
# decoders play, may go lower): a second of sound in at least this many bytes
_MP3_BYTES_PER_SECOND = 1_000
# an earlier spoken answer heard again: at most one answer's output (16,384 tokens on OpenAI's
# audio models)
SPOKEN_ANSWER_TOKENS = 16_384
_WAV_HEADER_CHARS = 8_192  # of base64: the chunks before the sound (fmt, LIST, fact)
# a recording a server fetches by its address: at most an hour, the longest an audio model
# takes (the model's context window ends a longer one first)
REMOTE_AUDIO_SECONDS = 3_600
# WAV formats whose length is their bytes over sample rate x frame: PCM, IEEE float, A-law,
# mu-law, and the extensible header with a PCM or float subformat; any other (ADPCM, MP3 in
# WAV) has no length a header states truly, and is counted as text
_WAV_PLAIN = (1, 3, 6, 7)
_WAV_EXTENSIBLE = 0xFFFE


def audio_tokens(part: dict[str, Any]) -> int | None:
    """The most tokens an ``input_audio`` part's sound may be billed, by the most seconds its
    data can hold; None where its format or header does not say (it is then counted as text).
    A server's ``audio_url`` by a remote address is fetched there, its length unknown here: an
    hour of sound (by a ``data:`` address, by its size as text)."""
    if part.get("type") == "audio_url":
        url = part.get("audio_url")
        url = url.get("url") if isinstance(url, dict) else url
        remote = isinstance(url, str) and not url.startswith("data:")
        return REMOTE_AUDIO_SECONDS * AUDIO_TOKENS_PER_SECOND if remote else None
    audio = part.get("input_audio")
    if not isinstance(audio, dict) or not isinstance(audio.get("data"), str):
        return None
    data, kind = audio["data"], audio.get("format")
    rate = _MP3_BYTES_PER_SECOND if kind == "mp3" else _wav_byte_rate(data) if kind == "wav" else 0
    if not rate:
        return None
    size = len(data) * 3 // 4  # the bytes the base64 text holds, header and all
    return -(-size * AUDIO_TOKENS_PER_SECOND // rate) + 1  # its seconds' tokens, rounded up


def _wav_byte_rate(data: str) -> int:
    """A WAV file's bytes a second of sound, read from its ``fmt `` chunk (the lesser of the
    rate it states and the one its sample rate, channels and sample size make: a file that lies
    is reserved the longer); 0 where the base64 `data` is no WAV file of PCM-like sound that
    says. By hand: the ``wave`` module reads PCM alone and wants the whole file."""
    head = data[:_WAV_HEADER_CHARS]
    try:
        raw = base64.b64decode(head[: len(head) - len(head) % 4], validate=True)
    except (binascii.Error, ValueError):
        return 0
    if raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        return 0
    at = 12
    while at + 8 <= len(raw):
        name, size = raw[at : at + 4], int.from_bytes(raw[at + 4 : at + 8], "little")
        if name == b"fmt " and at + 24 <= len(raw):
            # after the chunk's name and size: format, channels (2 bytes each), sample rate,
            # byte rate (4 each), frame size, bits a sample (2 each); an extensible header's
            # subformat's tag 24 bytes in
            field = functools.partial(_little, raw, at + 8)
            tag = field(0, 2)
            if tag == _WAV_EXTENSIBLE and at + 34 <= len(raw):
                tag = field(24, 26)
            if tag not in _WAV_PLAIN:
                return 0
            # a frame is what the channels' samples take, whatever the frame size field says
            made = field(4, 8) * field(2, 4) * -(-field(14, 16) // 8)
            rates = [r for r in (field(8, 12), made) if r > 0]
            return min(rates) if rates else 0
        at += 8 + size + size % 2
    return 0


def _little(raw: bytes, base: int, start: int, end: int) -> int:
    """The little-endian number at `raw[base + start : base + end]`."""
    return int.from_bytes(raw[base + start : base + end], "little")
