"""The page's half of Rollway: ``rollway.js``, shipped inside the package.

Three files sit beside this module: ``rollway.js`` (the ES module, the source),
``rollway.classic.js`` (the same code for a plain ``<script>``, as ``window.Rollway``;
generated from the module by :func:`classic_build`, a test keeps it in step) and
``rollway.d.ts`` (TypeScript declarations for both). ``rollway client-js`` prints them or
their paths, so an app can serve the file from wherever the package is installed.

    python -m rollway.web    # rewrites rollway.classic.js after an edit of rollway.js
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
FILES = {"module": "rollway.js", "classic": "rollway.classic.js", "types": "rollway.d.ts"}
_EXPORT = "export function install("


def path(kind: str = "module") -> Path:
    """Where the installed file is (``kind``: module, classic or types)."""
    if kind not in FILES:
        raise ValueError(f"unknown rollway.js build {kind!r}: one of {', '.join(FILES)}")
    return HERE / FILES[kind]


def source(kind: str = "module") -> str:
    return path(kind).read_text(encoding="utf-8")


def classic_build(module_source: str) -> str:
    """The module as a classic script: the one export becomes ``window.Rollway.install``."""
    if module_source.count("export ") != 1 or _EXPORT not in module_source:
        raise ValueError("rollway.js must have exactly one export, `export function install(`")
    body = module_source.replace(_EXPORT, "function install(")
    return ("// Generated from rollway.js by `python -m rollway.web`: edit that file instead.\n"
            "(function () {\n\"use strict\";\n" + body + "\n/** @type {any} */ (window).Rollway = { install: install };\n})();\n")


def main() -> None:
    path("classic").write_text(classic_build(source("module")), encoding="utf-8")


if __name__ == "__main__":
    main()


__all__ = ["FILES", "classic_build", "path", "source"]
