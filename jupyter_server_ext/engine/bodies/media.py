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
(``/Count``) and page objects, looking into compressed object streams as far as a bound lets;
a file whose pages cannot be seen is reserved the providers' most (100 pages).
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import re
import zlib

IMAGE_TOKENS = 3000  # the most an image costs on models not listed below
IMAGE_TOKENS_BY_MODEL = {"*4o-mini*": 48_169, "*nano*": 3_779}
PAGE_TEXT_TOKENS = 3000  # a dense page's text, on top of its image
MAX_PAGES = 100  # the most pages OpenAI and Anthropic read of one PDF
_INFLATE_BYTES = 8 * 2**20  # object streams inflated to count pages, at most, per PDF

_DATA_URL = re.compile(r"data:([^;,]*)(?:;[^,]*)?,", re.S)
_PAGE = re.compile(rb"/Type\s*/Page(?![A-Za-z])")
_COUNT = re.compile(rb"/Count\s+(\d{1,7})")
_PAGES_DICT = re.compile(rb"/Type\s*/Pages(?![A-Za-z])")
_STREAM = re.compile(rb"/ObjStm[^>]*>>\s*stream\r?\n")


def image_tokens(model: str) -> int:
    """The most one image may cost on `model`."""
    name = model.lower()
    return max(
        [IMAGE_TOKENS]
        + [
            tokens
            for pattern, tokens in IMAGE_TOKENS_BY_MODEL.items()
            if fnmatch.fnmatch(name, pattern)
        ]
    )


def file_tokens(part: dict[str, object], json_tokens: int, image: int) -> int:
    """The most a `file` part may cost: by its pages when it is a PDF sent inline (each page's
    text and image), never less than its size (`json_tokens`)."""
    file = part.get("file")
    data = file.get("file_data") if isinstance(file, dict) else None
    if not isinstance(data, str):  # a file id: the provider holds it, its size unknown here
        return max(json_tokens, MAX_PAGES * (PAGE_TEXT_TOKENS + image))
    head = _DATA_URL.match(data[:200])
    raw = data[head.end() :] if head is not None else data
    try:
        pdf = base64.b64decode(raw, validate=False)
    except (binascii.Error, ValueError):
        return json_tokens  # not base64: the provider refuses it
    pages = pdf_pages(pdf)
    return max(json_tokens, pages * (PAGE_TEXT_TOKENS + image))


def pdf_pages(pdf: bytes) -> int:
    """How many pages `pdf` may have: the largest of its page trees' ``/Count`` and its page
    objects, in the file and in the object streams it compresses; ``MAX_PAGES`` when neither
    can be seen (a page tree inside a stream past the bound); at most ``MAX_PAGES``."""
    texts = [pdf]
    budget = _INFLATE_BYTES
    for m in _STREAM.finditer(pdf):
        if budget <= 0:
            return MAX_PAGES
        inflater = zlib.decompressobj()
        try:
            text = inflater.decompress(pdf[m.end() :], budget)
        except zlib.error:
            continue
        budget -= len(text)
        texts.append(text)
    found = 0
    for text in texts:
        found = max(found, len(_PAGE.findall(text)))
        if _PAGES_DICT.search(text):
            found = max([found] + [int(c) for c in _COUNT.findall(text)])
    return min(MAX_PAGES, found) if found else MAX_PAGES
