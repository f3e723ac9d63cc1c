"""The jinja2 environment: every value printed from data is HTML-escaped, and backticks too.

Escaping the backtick matters because the report is an R Markdown document: knitr runs
`` `r …` `` inline code and ```` ```{r} ```` chunks wherever they appear, raw HTML included.
With no backtick left in data-derived text, no data can open code.
"""

from __future__ import annotations

import re
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup, escape

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates"


# Control characters other than tab and newlines, shown as visible symbols (a NUL would end a C
# string in pandoc or R, others are invalid in HTML), and lone surrogates (JSON can carry them;
# they cannot be written as UTF-8) as escapes.
_CONTROLS = {i: chr(0x2400 + i) for i in range(0x20) if i not in (0x09, 0x0A, 0x0D)} | {0x7F: "\u2421"}
_CONTROLS |= {i: f"\\x{i:02x}" for i in range(0x80, 0xA0)}


_INVISIBLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def visible(text: str) -> str:
    if not _INVISIBLE.search(text):  # nearly every value: one C-level scan (the TOC prints 10^5)
        return text
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text.translate(_CONTROLS))


def escape_text(value: object) -> Markup:
    if isinstance(value, Markup):
        return value
    if value is None:
        return Markup("")
    return Markup(visible(str(escape(value))).replace("`", "&#96;"))


def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=True,
        finalize=escape_text,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return env


def static_text(name: str) -> Markup:
    """A file from templates/static, inlined as-is (our own CSS/JS, no data)."""
    return Markup((TEMPLATES_DIR / "static" / name).read_text())


def render(template: str, **context) -> str:
    return environment().get_template(template).render(static=static_text, **context)
