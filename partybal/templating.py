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


def escape_text(value: object) -> Markup:
    if isinstance(value, Markup):
        return value
    if value is None:
        return Markup("")
    return Markup(str(escape(value)).replace("`", "&#96;"))


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
