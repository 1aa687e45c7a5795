"""The README's code blocks, read by the tests that run them verbatim (tests/test_readme.py, tests/e2e)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
EXAMPLE_CONFIG = ROOT / "examples" / "receiver.yml"

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.MULTILINE | re.DOTALL)


def section(heading: str, text: str | None = None) -> str:
    """The README from the heading line `heading` (without its #s) to the next heading of its level or above."""
    text = README.read_text(encoding="utf-8") if text is None else text
    match = re.search(rf"^(#+) {re.escape(heading)}\n", text, re.MULTILINE)
    if match is None:
        raise AssertionError(f"README.md has no heading {heading!r}")
    level = len(match.group(1))
    lines = text[match.end() :].splitlines(keepends=True)
    in_code = False
    for i, line in enumerate(lines):
        in_code ^= line.startswith("```")
        heading_level = len(line) - len(line.lstrip("#"))
        if not in_code and 0 < heading_level <= level and line[heading_level:].startswith(" "):
            return "".join(lines[:i])  # a `# comment` inside a code block is not a heading
    return "".join(lines)


def code_blocks(heading: str, language: str) -> list[str]:
    """The fenced blocks of `language` in the README section `heading`, in order, as written."""
    return [body for lang, body in _FENCE.findall(section(heading)) if lang == language]
