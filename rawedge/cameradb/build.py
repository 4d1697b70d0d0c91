"""Generate ``rawedge/assets/camera_db.json`` from LibRaw's colour table (``src/tables/colordata.cpp``).

    python -m rawedge.cameradb.build ../shared/data/camera-tables/colordata.cpp -o rawedge/assets/camera_db.json

The asset is never edited by hand: the test suite regenerates it and compares. Only the numbers are
taken (maker, model prefix, black, maximum, XYZ->camera matrix), credited to LibRaw (LGPL-2.1 / CDDL-1.0).
Table order is kept, because LibRaw uses the FIRST row whose prefix matches ("EOS 5D Mark II" is listed
before "EOS 5D"). Preprocessor blocks are evaluated as in LibRaw's default build: ``#ifdef X`` is off
(unless ``--define X``), ``#ifndef X`` on, ``#if 0`` off, ``#if 1`` on.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

# LIBRAW_CAMERAMAKER_<Name> constants whose display name differs from <Name>.
MAKER_NAMES = {"PhaseOne": "Phase One", "OmniVison": "OmniVision", "DXO": "DxO", "RaspberryPi": "Raspberry Pi"}
LICENCE = ("numbers from LibRaw's adobe_coeff table (Copyright LibRaw LLC; LGPL-2.1 or CDDL-1.0), "
           "most of them Adobe DNG Converter ColorMatrix2 (D65) values")
COLUMNS = ["maker", "prefix", "black", "white", "xyz_to_cam"]

_INT = r"[-+]?\s*(?:0[xX][0-9a-fA-F]+|\d+)"
_ENTRY = re.compile(r"\{\s*LIBRAW_CAMERAMAKER_(\w+)\s*,\s*\"((?:[^\"\\]|\\.)*)\"\s*,\s*(" + _INT + r")\s*,\s*("
                    + _INT + r")\s*,\s*\{([^{}]*)\}\s*,?\s*\}")
_ENTRY_START = re.compile(r"\{\s*LIBRAW_CAMERAMAKER_")


class TableError(ValueError):
    """The source does not look like LibRaw's colour table."""


def strip_comments(text: str) -> str:
    """C/C++ source without comments (string literals respected; newlines kept so lines stay lines)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i:j + 1])
            i = j + 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("\n" * text.count("\n", i, j))
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def active_lines(text: str, defines: frozenset[str] = frozenset()) -> str:
    """Drop preprocessor lines and the lines of conditional blocks that are off."""
    stack: list[bool] = []  # is each enclosing block on?
    kept = []
    for line in text.splitlines():
        directive = line.strip()
        if directive.startswith("#"):
            words = directive[1:].split()
            word, arg = (words + ["", ""])[:2] if words else ("", "")
            if word == "ifdef":
                stack.append(arg in defines)
            elif word == "ifndef":
                stack.append(arg not in defines)
            elif word == "if":
                stack.append(arg not in ("0", "false"))
            elif word in ("else", "elif"):
                if not stack:
                    raise TableError(f"#{word} without #if")
                stack[-1] = not stack[-1] if word == "else" else False
            elif word == "endif":
                if not stack:
                    raise TableError("#endif without #if")
                stack.pop()
            continue
        if all(stack):
            kept.append(line)
    if stack:
        raise TableError("unterminated #if block")
    return "\n".join(kept)


def _int(token: str) -> int:
    return int(token.replace(" ", ""), 0)


def parse_table(source: str, defines: frozenset[str] = frozenset()) -> list[dict]:
    """The rows of ``adobe_coeff``'s table, in table order."""
    text = active_lines(strip_comments(source), defines)
    start = re.search(r"\btable\s*\[\s*\]\s*=\s*\{", text)
    if not start:
        raise TableError("no 'table[] = {' found")
    end = text.find("};", start.end())
    body = text[start.end():end if end >= 0 else len(text)]
    rows = []
    for m in _ENTRY.finditer(body):
        maker, prefix, black, white, numbers = m.groups()
        try:
            values = [_int(v) for v in numbers.split(",") if v.strip()]
            black, white = _int(black), _int(white)
        except ValueError:
            raise TableError(f"{maker} {prefix!r}: a matrix number is not an integer") from None
        if len(values) < 9:
            raise TableError(f"{maker} {prefix!r}: {len(values)} matrix numbers, expected 9 or 12")
        # A negative black is LibRaw's fallback for files that say 0: its magnitude is the level.
        rows.append({"maker": MAKER_NAMES.get(maker, maker), "prefix": prefix, "black": abs(black), "white": white,
                     "xyz_to_cam": [[round(v / 10000, 4) for v in values[r * 3:r * 3 + 3]] for r in range(3)]})
    starts = len(_ENTRY_START.findall(body))
    if starts != len(rows):
        raise TableError(f"{starts} table rows found but only {len(rows)} could be parsed")
    if not rows:
        raise TableError("the table has no rows")
    return rows


def libraw_commit(source_path: Path) -> str | None:
    """The LibRaw commit named in the MANIFEST.md beside the source, if there is one."""
    manifest = source_path.parent / "MANIFEST.md"
    if not manifest.is_file():
        return None
    m = re.search(r"\b[0-9a-f]{40}\b", manifest.read_text(errors="replace"))
    return m.group(0) if m else None


def render(rows: list[dict], commit: str | None, defines: frozenset[str] = frozenset()) -> str:
    """Compact JSON: the header, then one row per line as [maker, prefix, black, white, matrix]."""
    header = {"source": "LibRaw src/tables/colordata.cpp (adobe_coeff)", "libraw_commit": commit,
              "licence": LICENCE, "defines": sorted(defines), "count": len(rows), "columns": COLUMNS}
    head = json.dumps(header, ensure_ascii=False)[:-1]
    lines = [json.dumps([r[c] for c in COLUMNS], ensure_ascii=False, separators=(",", ":")) for r in rows]
    return head + ', "entries": [\n' + ",\n".join(lines) + "\n]}\n"


def build(source_path: str | Path, defines: frozenset[str] = frozenset()) -> str:
    source_path = Path(source_path)
    rows = parse_table(source_path.read_text(encoding="utf-8", errors="replace"), defines)
    return render(rows, libraw_commit(source_path), defines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rawedge.cameradb.build", description=__doc__.split("\n\n")[0])
    ap.add_argument("source", help="LibRaw's src/tables/colordata.cpp")
    ap.add_argument("-o", "--output", help="JSON to write (default: stdout)")
    ap.add_argument("--define", action="append", default=[], help="preprocessor name to treat as defined")
    args = ap.parse_args(argv)
    try:
        text = build(args.source, frozenset(args.define))
    except (OSError, TableError) as exc:
        print(f"rawedge.cameradb.build: error: {args.source}: {exc}", file=sys.stderr)
        return 1
    if args.output:
        from rawedge.io.atomic import atomic_output

        with atomic_output(args.output) as tmp:
            Path(tmp).write_text(text, encoding="utf-8")
        print(f"wrote {args.output}: {json.loads(text)['count']} cameras")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
