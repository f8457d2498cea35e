#!/usr/bin/env python3
"""The layering check: a module may import only modules of a lower layer.

Reads every `crate::<module>` path in src/ (outside comments and string literals) and
checks it against LAYERS below, lowest first. Same-layer imports between different modules
are refused too, so the import graph of the crate's modules has no cycle. Run it from the
repository root: `python3 .ci/layers.py` (prints the graph; exits 1 on a violation).
"""
import pathlib
import re
import sys

# Lowest first. A module may use the ones in earlier rows, never the same row or later.
LAYERS = [
    ["error", "clock"],
    ["metrics", "access_log"],
    ["net", "http"],
    ["hub"],
    ["auth", "engine"],
    ["config"],
    ["runtime"],
    ["conn"],
    ["server"],
]
# Not part of the flow: the fuzzing entry points may reach anything.
EXEMPT = {"fuzzing", "lib", "main"}

RANK = {m: i for i, row in enumerate(LAYERS) for m in row}
PATH = re.compile(r"\bcrate::([a-z_]+)")


def strip(text):
    """Removes comments and string literals, so docs and messages do not count."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r'r#*"(?:.|\n)*?"#*', '""', text)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    return text


def module_of(path, src):
    rel = path.relative_to(src)
    return rel.parts[0].removesuffix(".rs")


def main():
    src = pathlib.Path("src")
    edges = {}
    for path in sorted(src.rglob("*.rs")):
        module = module_of(path, src)
        if module in EXEMPT:
            continue
        if module not in RANK:
            print(f"{path}: module `{module}` has no layer in .ci/layers.py")
            return 1
        for used in PATH.findall(strip(path.read_text())):
            if used != module:
                edges.setdefault((module, used), set()).add(str(path))
    bad = []
    for (a, b), files in sorted(edges.items()):
        ok = b in RANK and RANK[b] < RANK[a]
        print(f"{'  ' if ok else '✗ '}{a} -> {b}")
        if not ok:
            bad.append(f"{a} imports {b} (a layer not below it) in {', '.join(sorted(files))}")
    for line in bad:
        print(line, file=sys.stderr)
    print("layers: ok" if not bad else f"layers: {len(bad)} violation(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
