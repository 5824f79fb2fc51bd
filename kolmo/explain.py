"""Information maps: which parts of Y does X explain?

    e = kolmo.explain(y, given=x, compressor="zstd")
    e.saved            # bits X saves on each part of Y
    e.to_html()        # Y's text coloured by the bits X saves per byte (notebooks show it inline)

``explain`` splits the code length of Y into parts, each measured alone and given X, through the
compressor's own interface: ``bits_alone`` is ``compressor.code_parts(y).bits`` and ``bits_given``
``compressor.code_parts(y, given=x).bits`` (:class:`~kolmo.compressors.base.CodeParts`; both must
split Y into the same spans). What a part is depends on the compressor:

Token models (the language model ``"lm"``; any compressor whose ``code_parts`` gives ``unit="token"``)
    Per token: ``bits_alone[k]`` is token k's -log2 p with only Y's own earlier tokens as context;
    ``bits_given[k]`` the same after X (for ``"lm"``, X's tokens in the KV cache, the conditioning
    of ``conditional_bits``). Each token spells a fixed byte span of Y. Exact: the parts are the
    terms whose sums are ``bits(y)`` and ``conditional_bits(y, x)``; ``block`` does not apply.
Codecs (zstd, zlib, lzma, bz2, ppmd, your own): the default ``Compressor.code_parts``
    Per block of ``block`` bytes, by incremental sizes
    ``bits_alone[k] = C(Y[:end_k]) - C(Y[:end_{k-1}])`` and
    ``bits_given[k] = C(Y[:end_k] | X) - C(Y[:end_{k-1}] | X)`` (``conditional_bits`` of prefixes).
    An approximation: compressed sizes are not additive per block (a codec's block splits,
    entropy tables and size-dependent parameters change as the prefix grows), so a part's bits
    depend on where the cuts fall, and a part can even be negative. The sums telescope, so they
    equal ``bits(y)`` and ``conditional_bits(y, x)`` exactly. Cost: two compressions of a prefix
    per block, about ``len(y)**2 / block`` bytes compressed in all: keep Y to some tens of kB, or
    raise ``block``. The default block is ``max(16, ceil(len(y) / 256))`` bytes: at most 256 parts.

``c_y`` and ``c_y_given_x`` are the sums of the parts (``CodeParts.total``).

``saved[k] = bits_alone[k] - bits_given[k]``: what X saves on part k. :meth:`Explanation.to_html`
spreads each part's saving evenly over its bytes (bits/byte) and colours Y's text with it: green
where X helps, red where Y's part costs more given X (X can mislead a model's predictions, and
a codec's parts shift with its block and parameter choices).
"""

from __future__ import annotations

import html
import json
import math
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np

from .compressors.base import CodeParts, Compressor
from .inputs import Data, as_dataset
from .measures import warn_window
from .registry import resolve


@dataclass(frozen=True, repr=False)
class Explanation:
    """Code length of each part of Y alone and given X, in bits (see :mod:`kolmo.explain`)."""

    y: bytes = field(repr=False)
    spans: Tuple[Tuple[int, int], ...]  # (start, end) byte offsets of each part in y
    bits_alone: Tuple[float, ...]
    bits_given: Tuple[float, ...]
    unit: str  # "token" (lm) or "block" (codecs)
    block: Optional[int]
    c_y: float  # bits(y) as the compressor reports it
    c_y_given_x: float  # conditional_bits(y, x)
    n_x: int
    compressor: str
    config: Dict[str, Any] = field(repr=False)
    bits_kind: str = "compressed"
    conditional_method: str = "concatenation"
    warnings: Tuple[str, ...] = ()

    @property
    def saved(self) -> Tuple[float, ...]:
        """Bits X saves on each part: bits_alone - bits_given."""
        return tuple(a - g for a, g in zip(self.bits_alone, self.bits_given))

    @property
    def total_saved(self) -> float:
        """C(Y) - C(Y|X), in bits."""
        return self.c_y - self.c_y_given_x

    def saved_per_byte(self) -> np.ndarray:
        """Each byte of Y gets its part's saving divided by the part's length (bits/byte)."""
        out = np.zeros(len(self.y))
        for (a, b), s in zip(self.spans, self.saved):
            if b > a:
                out[a:b] = s / (b - a)
        return out

    def __len__(self) -> int:
        return len(self.spans)

    def to_dict(self) -> Dict[str, Any]:
        parts = [{"start": a, "end": b, "text": self.y[a:b].decode("utf-8", errors="backslashreplace"),
                  "bits_alone": ba, "bits_given": bg, "saved": ba - bg}
                 for (a, b), ba, bg in zip(self.spans, self.bits_alone, self.bits_given)]
        return {"unit": self.unit, "block": self.block, "n_y": len(self.y), "n_x": self.n_x, "c_y": self.c_y,
                "c_y_given_x": self.c_y_given_x, "saved": self.total_saved, "units": "bits",
                "compressor": self.compressor, "config": self.config, "bits_kind": self.bits_kind,
                "conditional_method": self.conditional_method, "warnings": list(self.warnings), "parts": parts}

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def __repr__(self) -> str:
        kind = "real compressed sizes" if self.bits_kind == "compressed" else "ideal code lengths"
        per = f"{self.unit}s" if self.unit == "token" else f"blocks of {self.block} bytes"
        n = max(len(self.y), 1)
        lines = [f"Explanation({self.compressor}, {kind}, bits; {len(self)} {per})",
                 f"  C(Y)    {self.c_y:>12.1f}  {len(self.y)} bytes, {self.c_y / n:.3f} bits/byte",
                 f"  C(Y|X)  {self.c_y_given_x:>12.1f}  given {self.n_x} bytes of X ({self.conditional_method})",
                 f"  saved   {self.total_saved:>12.1f}  {self.total_saved / n:.3f} bits/byte"]
        saved = self.saved
        top = sorted(range(len(saved)), key=lambda k: -saved[k])[:5]
        if top:
            lines.append("  most saved:")
            for k in top:
                a, b = self.spans[k]
                text = _plain(self.y[a:b])
                text = text if len(text) <= 40 else text[:37] + "..."
                lines.append(f"    {saved[k]:>9.1f} bits  bytes {a}-{b}  \"{text}\"")
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    # -- HTML -------------------------------------------------------------------------------------------
    def _repr_html_(self) -> str:
        return self.to_html()

    def to_html(self, *, full_page: bool = False, scale: Optional[float] = None) -> str:
        """Y's text coloured by the bits X saves per byte (green: saved, red: cost), with a legend.

        ``scale`` (bits/byte) is the saving at full colour; default: the largest |saving| per byte.
        Text is HTML-escaped; bytes that are not valid UTF-8 and control characters are shown as
        ``\\xNN`` escapes. A character whose bytes span two parts takes the colour of the part
        where it starts. ``full_page=True`` wraps the fragment in a standalone HTML document.
        """
        per_byte = [(s / (b - a) if b > a else 0.0) for (a, b), s in zip(self.spans, self.saved)]
        top = scale if scale is not None else max((abs(v) for v in per_byte), default=0.0)
        top = top if top > 0 else 1.0
        starts = _glyphs(self.y)  # byte offset -> displayed text of the character starting there
        out = ['<div class="kolmo-explain" style="font-family: sans-serif; font-size: 13px;">',
               self._legend_html(top),
               '<pre style="white-space: pre-wrap; word-wrap: break-word; font-family: monospace; '
               'font-size: 13px; line-height: 1.5; margin: 6px 0; padding: 6px; border: 1px solid #ccc;">']
        for (a, b), ba, bg, v in zip(self.spans, self.bits_alone, self.bits_given, per_byte):
            text = "".join(starts[i] for i in range(a, b) if i in starts)
            if not text:
                continue
            title = (f"bytes {a}-{b}: {ba:.1f} bits alone, {bg:.1f} given X, saved {ba - bg:.1f} "
                     f"({v:.2f} bits/byte)")
            out.append(f'<span style="background-color: {_colour(v / top)}" title="{html.escape(title)}">'
                       f"{text}</span>")
        out.append("</pre></div>")
        fragment = "".join(out)
        if not full_page:
            return fragment
        head = html.escape(f"kolmo explain: {self.compressor}")
        return (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{head}</title></head>'
                f"<body>\n{fragment}\n</body></html>\n")

    def _legend_html(self, top: float) -> str:
        n = max(len(self.y), 1)
        stops = ", ".join(_colour(t) for t in (-1.0, -0.5, 0.0, 0.5, 1.0))
        kind = "real compressed sizes" if self.bits_kind == "compressed" else "ideal code lengths"
        per = "token" if self.unit == "token" else f"block of {self.block} bytes"
        totals = (f"C(Y) = {self.c_y:,.1f} bits ({self.c_y / n:.3f} bits/byte), "
                  f"C(Y|X) = {self.c_y_given_x:,.1f} bits given {self.n_x:,} bytes of X, "
                  f"X saves {self.total_saved:,.1f} bits ({self.total_saved / n:.3f} bits/byte)")
        return ('<div class="kolmo-legend">'
                f"<div><b>{html.escape(self.compressor)}</b> ({html.escape(kind)}), one part per "
                f"{html.escape(per)}, {len(self.y):,} bytes of Y.</div>"
                f"<div>{html.escape(totals)}</div>"
                '<div style="display: flex; align-items: center; gap: 6px; margin-top: 4px;">'
                f"<span>X costs {top:.2f} bits/byte</span>"
                f'<span style="display: inline-block; width: 200px; height: 12px; '
                f'background: linear-gradient(to right, {stops}); border: 1px solid #999;"></span>'
                f"<span>X saves {top:.2f} bits/byte</span></div></div>")


def _plain(data: bytes) -> str:
    """Bytes as one line of printable text: invalid UTF-8 and control characters as escapes."""
    text = data.decode("utf-8", errors="backslashreplace")
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def _colour(t: float) -> str:
    """-1 (red) .. 0 (white) .. 1 (green), as an rgb() colour."""
    t = max(-1.0, min(1.0, t)) if math.isfinite(t) else 0.0
    if t >= 0:
        return f"rgb({round(255 - 155 * t)}, {round(255 - 35 * t)}, {round(255 - 155 * t)})"
    t = -t
    return f"rgb({round(255 - 15 * t)}, {round(255 - 155 * t)}, {round(255 - 155 * t)})"


def _glyphs(data: bytes) -> Dict[int, str]:
    """Start byte of each character -> its HTML-escaped display text; invalid bytes as ``\\xNN``."""
    out: Dict[int, str] = {}
    pos = 0
    esc = '<span style="color: #a00; font-style: italic">{}</span>'
    for ch in data.decode("utf-8", errors="surrogateescape"):
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that is not valid UTF-8
            out[pos] = esc.format(f"\\x{code - 0xDC00:02x}")
            pos += 1
            continue
        if ch not in "\n\r\t" and unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            out[pos] = esc.format(html.escape(ch.encode("unicode_escape").decode("ascii")))
        else:
            out[pos] = html.escape(ch)
        pos += len(ch.encode("utf-8"))
    return out


def explain(y: Data, given: Data, compressor: Union[str, Compressor] = "zstd", *, block: Optional[int] = None,
            **options: Any) -> Explanation:
    """Code length of each part of Y alone and given X (``given``); see :mod:`kolmo.explain`.

    ``block`` (bytes per part) applies to the codecs; token models (the language model) explain per token.
    """
    comp = resolve(compressor, **options)
    by, bx = (as_dataset(v, comp.document_separator, name=n)[0] for v, n in ((y, "y"), (given, "given")))
    found = warn_window(comp, len(bx) + len(by), stacklevel=3)  # warn_window, explain, caller
    alone = comp.code_parts(by, block=block)
    cond = comp.code_parts(by, given=bx, block=block)
    _check_parts(comp, by, alone, cond)
    return Explanation(y=by, spans=alone.spans, bits_alone=alone.bits, bits_given=cond.bits, unit=alone.unit,
                       block=alone.block, c_y=alone.total, c_y_given_x=cond.total, n_x=len(bx), compressor=comp.name,
                       config=dict(comp.config), bits_kind=comp.bits_kind,
                       conditional_method=comp.conditional_method, warnings=found)


def _check_parts(comp: Compressor, y: bytes, alone: CodeParts, cond: CodeParts) -> None:
    """Both splits are CodeParts over the same spans of all of Y (a compressor's own override may err)."""
    for parts in (alone, cond):
        if not isinstance(parts, CodeParts):
            raise TypeError(f"the {comp.name} compressor's code_parts returned {type(parts).__name__}, "
                            "not a CodeParts")
    end = alone.spans[-1][1] if alone.spans else 0
    if end != len(y):
        raise ValueError(f"the {comp.name} compressor's parts cover {end} bytes of Y, not its {len(y)}")
    if (alone.spans, alone.unit, alone.block) != (cond.spans, cond.unit, cond.block):
        raise ValueError(f"the {comp.name} compressor splits Y into other parts given X than alone "
                         f"({len(alone.spans)} {alone.unit}s alone, {len(cond.spans)} {cond.unit}s given X): "
                         "explain compares the two part by part")
