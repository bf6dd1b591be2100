#!/usr/bin/env python3
"""The client's layering rule: a core file never names a middleware, and a middleware never
names another middleware.

The middlewares are the modules `src/client/mod.rs` declares after its line
`// The middlewares`; every other file under `src/client/` is core, except `mod.rs` itself (the
facade, which names everything). What two middlewares must agree on belongs in the core.

Names are looked for in code only (comments and string literals are skipped): a path that goes
through a middleware module (`super::retry::..`, `crate::client::token::..`, `retry::Attempt`
inside a `use` group). Exits 1 with the file, the line and the name for each breach.

`--self-test` checks the checker on a few lines that must and must not be caught.
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLIENT = ROOT / "src" / "client"
MARKER = "// The middlewares"


def middlewares(facade: str) -> list[str]:
    """The module names declared after the marker line of the facade."""
    if MARKER not in facade:
        sys.exit(f"layering: src/client/mod.rs has no {MARKER!r} line to list the middlewares")
    after = facade.split(MARKER, 1)[1]
    return re.findall(r"^\s*(?:pub(?:\([a-z]+\))?\s+)?mod\s+([a-z_][a-z0-9_]*)\s*;", after, re.M)


def code_only(line: str) -> str:
    """The line without string literals and without its comment."""
    line = re.sub(r'"(?:\\.|[^"\\])*"', '""', line)
    return line.split("//", 1)[0]


def breaches(text: str, forbidden: list[str]) -> list[tuple[int, str, str]]:
    """(line number, name, line) for each forbidden module named in `text`'s code."""
    if not forbidden:
        return []
    names = "|".join(map(re.escape, forbidden))
    # A path through the module: after `super::`, `crate::client::`, or inside a `use` group or
    # at the start of a `use` path.
    pattern = re.compile(
        rf"(?:\bsuper::|\bcrate::client::|[{{,]\s*|\buse\s+)({names})\b\s*(?:::|;|,|\}})"
    )
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for match in pattern.finditer(code_only(line)):
            found.append((number, match.group(1), line.strip()))
    return found


def owner(path: Path, modules: list[str]) -> str | None:
    """The middleware a file belongs to, or None for a core file."""
    relative = path.relative_to(CLIENT)
    first = relative.parts[0]
    name = first[:-3] if first.endswith(".rs") else first
    return name if name in modules else None


def check() -> int:
    facade = CLIENT / "mod.rs"
    modules = middlewares(facade.read_text())
    failures = 0
    for path in sorted(CLIENT.rglob("*.rs")):
        if path == facade:
            continue
        mine = owner(path, modules)
        forbidden = [name for name in modules if name != mine]
        role = f"the middleware `{mine}`" if mine else "a core file"
        for number, name, line in breaches(path.read_text(), forbidden):
            failures += 1
            print(
                f"{path.relative_to(ROOT)}:{number}: {role} names the middleware `{name}`: {line}"
            )
    if failures:
        print(
            f"layering: {failures} breach(es). A core file never names a middleware and a "
            "middleware never names another; move what they share into the core."
        )
        return 1
    print(f"layering: ok ({len(modules)} middlewares: {', '.join(modules)})")
    return 0


def self_test() -> int:
    modules = ["retry", "logging", "token", "digest"]
    caught = [
        "use super::retry::GaveUp;",
        "use super::{Error, retry::Attempt};",
        "let x = crate::client::token::in_refresh();",
        "use crate::client::logging::Redaction;",
        "    super::super::digest::Failure",
    ]
    passed = [
        "use super::attempt::GaveUp; // not super::retry::GaveUp",
        'let text = "super::retry::GaveUp";',
        "let retry = policy.retry_after();",
        "reqwest::retry::never()",
        "use super::token_bucket::Bucket;",
    ]
    wrong = [line for line in caught if not breaches(line, modules)]
    wrong += [line for line in passed if breaches(line, modules)]
    facade = "mod error;\n// The middlewares: ...\npub mod digest;\npub mod retry;\n"
    if middlewares(facade) != ["digest", "retry"]:
        wrong.append("the middleware list read from a facade")
    for line in wrong:
        print(f"layering self-test: wrong verdict on {line!r}")
    return 1 if wrong else 0


if __name__ == "__main__":
    if "--self-test" in sys.argv[1:]:
        sys.exit(self_test())
    sys.exit(self_test() or check())
