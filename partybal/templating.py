"""The jinja2 environment: every value printed from data is HTML-escaped, and backticks too.

Escaping the backtick matters because the report is an R Markdown document: knitr runs
`` `r …` `` inline code and ```` ```{r} ```` chunks wherever they appear, raw HTML included.
With no backtick left in data-derived text, no data can open code.
"""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup, escape

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"


# Control characters other than tab and newlines, shown as visible symbols (a NUL would end a C
# string in pandoc or R, others are invalid in HTML), and lone surrogates (JSON can carry them;
# they cannot be written as UTF-8) as escapes.
_CONTROLS = {i: chr(0x2400 + i) for i in range(0x20) if i not in (0x09, 0x0A, 0x0D)} | {0x7F: "\u2421"}
_CONTROLS |= {i: f"\\x{i:02x}" for i in range(0x80, 0xA0)}


def visible(text: str) -> str:
    text = text.translate(_CONTROLS)
    if any("\ud800" <= ch <= "\udfff" for ch in text):
        text = "".join(f"\\u{ord(ch):04x}" if "\ud800" <= ch <= "\udfff" else ch for ch in text)
    return text


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
