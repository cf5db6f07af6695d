"""False positives of the ``pii`` recognisers on benign numeric text: hex dumps of real files, byte
listings, tables of numbers, version strings and timestamps. None of it holds personal data, so
every finding is a false positive.

Run: ``.venv/bin/python bench/eval_pii_benign.py`` (prints a Markdown table; ``--show`` prints each
finding with its kind and the dump line it came from: benign data, safe to print).

The set (deterministic, built on the fly): the first 4 KB of every binary file shipped in the
repository (``docs/img/*.png``, ``*/data/*.npz``) dumped by ``xxd``, ``od -x``, ``od -An -tx1``,
``od -o`` and ``hexdump -C`` (tools missing on the machine are skipped), plus generated CSVs of
floats and integers, space-separated integer tables, version strings, ISO timestamps and epoch
milliseconds (``random.Random(7)``). Each family is cut into 2,000-character documents (the size
of a pasted snippet). Reported per family: documents, documents with any finding (the rate a
user would see a placeholder) and findings per 100 KB, by entity.
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from policies.builtin.pii_entities import PiiFinder  # noqa: E402
from policies.builtin.redaction import resolve_overlaps  # noqa: E402

DOC_CHARS = 2000
DUMPERS: dict[str, list[str]] = {
    "xxd": ["xxd"],
    "od -x": ["od", "-x"],
    "od -An -tx1": ["od", "-An", "-tx1"],
    "od -o": ["od", "-o"],
    "hexdump -C": ["hexdump", "-C"],
}


def binary_files() -> list[Path]:
    """The repository's own binary files, sorted (the same set on every machine)."""
    files = sorted(REPO.glob("docs/img/*.png")) + sorted(REPO.glob("*/data/*.npz"))
    return [f for f in files if f.is_file()]


def dumps(tool: str) -> str:
    """``tool``'s dump of the first 4 KB of every binary file, concatenated."""
    argv = DUMPERS[tool]
    out = []
    for f in binary_files():
        data = f.read_bytes()[:4096]
        out.append(subprocess.run(argv, input=data, capture_output=True, check=True).stdout.decode())
    return "".join(out)


def generated(family: str, chars: int = 100_000) -> str:
    """Generated benign numeric text of about ``chars`` characters."""
    r = random.Random(7)
    rows: list[str] = []
    size = 0
    while size < chars:
        if family == "csv floats":
            row = ",".join([str(len(rows))] + [f"{r.uniform(-1e3, 1e3):.4f}" for _ in range(4)])
        elif family == "csv integers":
            row = ",".join(str(r.randint(0, 10 ** r.randint(1, 10))) for _ in range(6))
        elif family == "space table":
            row = " ".join(f"{r.randint(0, 9999):04d}" for _ in range(8))
        elif family == "versions":
            row = f"pkg-{r.randint(1, 99)} {r.randint(0, 20)}.{r.randint(0, 99)}.{r.randint(0, 999)}"
            row += f".{r.randint(0, 9999)} build {r.randint(1000, 99999)}"
        elif family == "timestamps":
            row = (
                f"2026-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}T{r.randint(0, 23):02d}:"
                f"{r.randint(0, 59):02d}:{r.randint(0, 59):02d}.{r.randint(0, 999999):06d}Z "
                f"{r.randint(1_600_000_000_000, 1_800_000_000_000)} req={r.randint(0, 10**9)}"
            )
        else:
            raise ValueError(family)
        rows.append(row)
        size += len(row) + 1
    return "\n".join(rows)


GENERATED = ("csv floats", "csv integers", "space table", "versions", "timestamps")


def families() -> Iterator[tuple[str, str]]:
    """``(family, text)`` for every family available on this machine."""
    for tool, argv in DUMPERS.items():
        if shutil.which(argv[0]) is not None:
            yield tool, dumps(tool)
    for family in GENERATED:
        yield family, generated(family)


def chunks(text: str) -> list[str]:
    """``text`` cut into documents of about ``DOC_CHARS`` characters at line ends (a paste holds
    whole lines)."""
    docs: list[str] = []
    start = 0
    while start < len(text):
        end = text.find("\n", start + DOC_CHARS)
        end = len(text) if end < 0 else end + 1
        docs.append(text[start:end])
        start = end
    return docs


def main() -> None:
    """Print the false-positive table (and with ``--show`` every finding)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--show", action="store_true", help="print each finding")
    args = ap.parse_args()
    finder = PiiFinder()
    print("| family | documents | with a finding | findings / 100 KB | by entity |")
    print("| --- | ---: | ---: | ---: | --- |")
    for family, text in families():
        docs = chunks(text)
        kinds: Counter[str] = Counter()
        hit = 0
        for doc in docs:
            spans = resolve_overlaps(finder(doc))
            hit += bool(spans)
            for s in spans:
                kinds[s.kind] += 1
                if args.show:
                    line_start = doc.rfind("\n", 0, s.start) + 1
                    print(f"  {family}: {s.kind} {doc[line_start : doc.find(chr(10), s.end)]!r}")
        per_100k = sum(kinds.values()) * 100_000 / max(1, len(text))
        by = ", ".join(f"{k} {n}" for k, n in kinds.most_common()) or "-"
        print(f"| {family} | {len(docs)} | {hit} ({hit / len(docs):.1%}) | {per_100k:.1f} | {by} |")


if __name__ == "__main__":
    main()
