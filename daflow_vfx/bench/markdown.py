"""Where a benchmark's markdown goes: one marked section of a file, and the checkout's docs/benchmarks.md.

A benchmark prints its section; ``--output FILE`` also writes it into FILE between
``<!-- section:begin -->`` and ``<!-- section:end -->`` (the rest of the file is kept, so several
benchmarks fill one file), and ``--update-docs`` does that for the project's own docs/benchmarks.md.
That file exists only in a source checkout: an installed daflow-vfx has no docs/ to update, so asking
for it there is a clean usage error rather than a docs/ folder made in whatever the current folder is.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError

# daflow_vfx/ of the running code; its parent is the checkout root when run from a source tree
PACKAGE_DIR = Path(__file__).resolve().parent.parent


def update_markdown(path: str | Path, section: str, body: str) -> None:
    """Replace (or append) the block between ``<!-- section:begin -->`` and ``<!-- section:end -->``."""
    p = Path(path)
    text = p.read_text() if p.is_file() else "# Benchmarks\n"
    begin, end = f"<!-- {section}:begin -->", f"<!-- {section}:end -->"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def checkout_benchmarks(package_dir: Path | None = None) -> Path:
    """docs/benchmarks.md of the source checkout ``package_dir`` (default: this package) lives in;
    :class:`UsageError` (param ``update_docs``) when the package is installed rather than run from one."""
    package_dir = PACKAGE_DIR if package_dir is None else package_dir
    root = package_dir.parent
    doc = root / "docs" / "benchmarks.md"
    if not (root / "pyproject.toml").is_file() or not doc.is_file():
        raise UsageError(
            f"`update_docs` rewrites docs/benchmarks.md of a source checkout, and this daflow-vfx runs from "
            f"{package_dir}, which is not in one; write the markdown to a file of your own with `output`",
            param=("update_docs", "output"),
        )
    return doc


def output_target(output: str | None, *, update_docs: bool = False) -> str | None:
    """The file a benchmark writes its section into: ``output`` (None or ``"-"``: none, print only), or
    the checkout's docs/benchmarks.md for ``update_docs``; the two together are a usage error."""
    output = None if output in (None, "-") else output
    if update_docs and output is not None:
        raise UsageError(
            "give `output` or `update_docs`, not both: each names the file the section goes into",
            param=("output", "update_docs"),
        )
    return str(checkout_benchmarks()) if update_docs else output
