"""Prompt tokens of image, audio and file content parts, per provider family (conservative).

Where a provider publishes a formula (OpenAI's image tiles, Anthropic's pixels / 750) it
is applied to the image's real size, read with Pillow when it is installed; where the
size (or the provider's rule) is unknown, a documented upper bound is used, so a
reservation never undercounts what the provider bills. ``docs/providers.md`` lists them.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import re
from typing import Any

__all__ = [
    "AUDIO_TOKENS_PER_S",
    "AUDIO_MIN_BYTES_PER_S",
    "FILE_TOKENS_UNKNOWN",
    "IMAGE_TOKENS_MAX",
    "PDF_TOKENS_PER_PAGE",
    "media_tokens",
]

IMAGE_TOKENS_MAX = {"openai": 1445, "anthropic": 1600, "google": 1120, "other": 2880}
"""Tokens of one image whose size is unknown (a URL, a file id), per family.

openai: ``detail="high"`` at the largest tiling (2 x 4 tiles: 85 + 8 x 170); anthropic:
the documented maximum of about 1,600 tokens (images are resized to at most 1.15
megapixels); google: Gemini's high media resolution (1,120 per image); other (Ollama
LLaVA-style models, Mistral, Groq...): LLaVA-1.6's largest grid, 5 x 576.
"""
AUDIO_TOKENS_PER_S = 32
"""Audio tokens per second of input (Gemini's documented rate; OpenAI's is lower)."""
AUDIO_MIN_BYTES_PER_S = 1_000
"""Assumed bytes per second of compressed audio (8 kbit/s, below any speech codec in use),
so a duration estimated from a clip's size is never too short."""
PDF_TOKENS_PER_PAGE = 3_000
"""Tokens per PDF page (text plus the page image; Anthropic documents 1,500-3,000)."""
FILE_TOKENS_UNKNOWN = 8_000
"""Tokens assumed for a file part whose bytes are not in the request (a file id or URL)."""

# OpenAI's per-model image constants: (base tokens, tokens per 512 px tile) and, for the
# patch-based models, the multiplier on 32 px patches (capped at 1536 patches).
_OPENAI_TILES = (("gpt-4o-mini", (2833, 5667)), ("o1", (75, 150)), ("o3", (75, 150)))
_OPENAI_PATCHES = (
    ("gpt-4.1-mini", 1.62),
    ("gpt-4.1-nano", 2.46),
    ("o4-mini", 1.72),
    ("gpt-5-mini", 1.62),
    ("gpt-5-nano", 2.46),
)
_DATA_URL = re.compile(r"^data:([^;,]*)(?:;[^,]*)?,(.*)$", re.S)
_PDF_PAGE = re.compile(rb"/Type\s*/Page(?!s)")


def _decode(data: Any) -> bytes | None:
    if not isinstance(data, str) or not data:
        return None
    m = _DATA_URL.match(data)  # a data URL carries the bytes after the comma
    payload = m.group(2) if m else data
    try:
        return base64.b64decode(payload, validate=False)
    except (binascii.Error, ValueError):
        return None


def _image_size(raw: bytes | None) -> tuple[int, int] | None:
    if not raw:
        return None
    try:
        from PIL import Image  # optional: Pillow reads only the header here
    except ImportError:  # pragma: no cover - without Pillow every image is the bound
        return None
    try:
        with Image.open(io.BytesIO(raw)) as img:
            return int(img.width), int(img.height)
    except Exception:  # noqa: BLE001 - not an image Pillow knows: use the bound
        return None


def _openai_image(size: tuple[int, int] | None, detail: str, model: str | None) -> int:
    name = (model or "").lower()
    base, tile = 85, 170
    for prefix, consts in _OPENAI_TILES:
        if name.startswith(prefix):
            base, tile = consts
    for prefix, mult in _OPENAI_PATCHES:
        if name.startswith(prefix):
            if size is None:
                return math.ceil(1536 * mult)
            pw, ph = size
            patches = math.ceil(pw / 32) * math.ceil(ph / 32)
            if patches > 1536:  # scaled down to fit 1536 patches
                scale = math.sqrt(1536 * 32 * 32 / (pw * ph))
                patches = min(math.ceil(pw * scale / 32) * math.ceil(ph * scale / 32), 1536)
            return math.ceil(patches * mult)
    if detail == "low":
        return base
    if size is None:
        return base + 8 * tile
    w, h = float(size[0]), float(size[1])
    if max(w, h) > 2048:  # fit in 2048 x 2048
        s = 2048 / max(w, h)
        w, h = w * s, h * s
    if min(w, h) > 768:  # shortest side to 768
        s = 768 / min(w, h)
        w, h = w * s, h * s
    return base + tile * math.ceil(w / 512) * math.ceil(h / 512)


def _anthropic_image(size: tuple[int, int] | None) -> int:
    if size is None:
        return IMAGE_TOKENS_MAX["anthropic"]
    w, h = size
    s = min(1.0, 1568 / max(w, h), math.sqrt(1_150_000 / (w * h)))
    return min(math.ceil(w * s * h * s / 750), IMAGE_TOKENS_MAX["anthropic"])


def _google_image(size: tuple[int, int] | None) -> int:
    if size is None:
        return IMAGE_TOKENS_MAX["google"]
    w, h = size
    if w <= 384 and h <= 384:
        return 258
    return max(258 * math.ceil(w / 768) * math.ceil(h / 768), IMAGE_TOKENS_MAX["google"])


def image_tokens(raw: bytes | None, detail: str, family: str, model: str | None) -> int:
    """Tokens of one image for ``family`` (its real size when Pillow can read it)."""
    size = _image_size(raw)
    if family == "openai":
        return _openai_image(size, detail, model)
    if family == "anthropic":
        return _anthropic_image(size)
    if family == "google":
        return _google_image(size)
    return IMAGE_TOKENS_MAX["other"]


def _audio_seconds(raw: bytes) -> float:
    import wave

    try:
        with wave.open(io.BytesIO(raw)) as w:
            return w.getnframes() / max(w.getframerate(), 1)
    except (wave.Error, EOFError):
        return len(raw) / AUDIO_MIN_BYTES_PER_S


def audio_tokens(raw: bytes | None) -> int:
    """Tokens of an audio clip: its duration (WAV header, else bounded from size) x rate."""
    if not raw:
        return FILE_TOKENS_UNKNOWN
    return max(math.ceil(_audio_seconds(raw) * AUDIO_TOKENS_PER_S), 1)


def file_tokens(raw: bytes | None, mime: str) -> int:
    """Tokens of a file part: PDFs per page, text by a bound of 1 token per byte."""
    if raw is None:
        return FILE_TOKENS_UNKNOWN
    if mime == "application/pdf" or raw[:5] == b"%PDF-":
        return max(len(_PDF_PAGE.findall(raw)), 1) * PDF_TOKENS_PER_PAGE
    if mime.startswith("image/"):
        return IMAGE_TOKENS_MAX["other"]
    return len(raw)  # plain text files: a token is at least one byte


def _url_and_detail(block: dict[str, Any]) -> tuple[Any, str]:
    image_url = block.get("image_url")
    if isinstance(image_url, dict):
        return image_url.get("url"), str(image_url.get("detail") or "auto")
    return image_url, str(block.get("detail") or "auto")


def media_tokens(block: dict[str, Any], family: str, model: str | None) -> int | None:
    """Tokens of a non-text content block, or ``None`` if it is not a media block.

    Understands OpenAI (``image_url``, ``input_audio``, ``file``), LangChain's standard
    blocks (``image``/``audio``/``file`` with ``base64``/``data``/``url``/``file_id``) and
    Anthropic's (``image``/``document`` with a ``source``).
    """
    kind = block.get("type")
    if kind == "image_url":
        url, detail = _url_and_detail(block)
        return image_tokens(_decode(url) if _is_data(url) else None, detail, family, model)
    source = block.get("source") if isinstance(block.get("source"), dict) else None
    data = (
        block.get("base64")
        or (block.get("data") if block.get("source_type", "base64") == "base64" else None)
        or (source.get("data") if source else None)
    )
    url = block.get("url")
    if not data and _is_data(url):
        data = url
    mime = str(block.get("mime_type") or (source or {}).get("media_type") or "")
    if kind == "image":
        return image_tokens(_decode(data), str(block.get("detail") or "auto"), family, model)
    if kind in ("input_audio", "audio"):
        audio = block.get("input_audio")
        if isinstance(audio, dict):
            data = audio.get("data")
        return audio_tokens(_decode(data))
    if kind in ("file", "document"):
        file = block.get("file")
        if isinstance(file, dict):
            data = file.get("file_data") or data
        if source and source.get("type") == "text":
            return None  # a text document: counted as text by the caller
        return file_tokens(_decode(data), mime)
    return None


def _is_data(url: Any) -> bool:
    return isinstance(url, str) and url.startswith("data:")
