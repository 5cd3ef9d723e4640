#!/usr/bin/env python3
"""Finds import circles between the modules of src/ (one module per file).

An edge A -> B means code in A names an item of B: `use crate::..`, `use super::..`,
`use self::..` and paths written inline (`crate::fabric::FabricError`). A name that a module
only re-exports (`pub use child::Item`) is followed to the module that defines it, and a
module's own re-exports of its children are a facade, not a dependency. Prints every circle
(strongly connected set of two or more modules) and exits 1 when there is one.

Usage: scripts/import_cycles.py [SRC_DIR]
"""

import os
import re
import sys

SRC = sys.argv[1] if len(sys.argv) > 1 else "src"


def module_of(path):
    rel = os.path.relpath(path, SRC)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return tuple(rel)


def files():
    for root, _, names in os.walk(SRC):
        for n in names:
            if n.endswith(".rs"):
                yield os.path.join(root, n)


def strip(text):
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r'"(?:\\.|[^"\\])*"', '""', text)


def expand(tree):
    """Paths of a use tree: a::{b, c::{d, e}} -> a::b, a::c::d, a::c::e."""
    tree = re.sub(r"\s+", "", tree)
    m = re.match(r"^(.*?)\{(.*)\}$", tree)
    if not m:
        return [re.sub(r"as\w+$", "", tree)]
    head, body = m.groups()
    parts, depth, cur = [], 0, ""
    for ch in body:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    parts.append(cur)
    out = []
    for p in parts:
        if p:
            out += [head + q for q in expand(p)]
    return out


mods = {}
test_files = set()
for f in files():
    m = module_of(f)
    # Test modules kept in files of their own (`#[path = "x_tests.rs"] mod tests;`) belong to
    # the module under test.
    if f.endswith("_tests.rs") or os.path.basename(f) == "tests.rs":
        test_files.add(m)
    mods[m] = strip(open(f).read())
# Fold `foo_tests` / `foo/tests` into `foo`.
alias = {}
for m in test_files:
    last = m[-1]
    alias[m] = m[:-1] + (last[: -len("_tests")],) if last.endswith("_tests") else m[:-1]


def canon(m):
    return alias.get(m, m)


def absolute(mod, path):
    if mod in alias:
        mod = alias[mod] + ("tests",)
    segs = path.split("::")
    if segs[0] == "crate":
        return list(segs[1:])
    if segs[0] == "self":
        return list(mod) + segs[1:]
    base = list(mod)
    while segs and segs[0] == "super":
        base = base[:-1]
        segs = segs[1:]
    if path.startswith("super"):
        return base + segs
    return None


reexports = {}  # (module, name) -> absolute path it re-exports
for m, text in mods.items():
    for tree in re.findall(r"\bpub(?:\([^)]*\))?\s+use\s+([^;]+);", text):
        for p in expand(tree):
            segs = p.split("::")
            if segs[0] not in ("crate", "super", "self"):
                p = "self::" + p
            a = absolute(m, p)
            if a:
                reexports[(m, a[-1])] = a


def resolve(a, seen=0):
    """The module that defines the item at absolute path `a`."""
    for k in range(len(a), 0, -1):
        if tuple(a[:k]) in mods:
            mod = tuple(a[:k])
            rest = a[k:]
            if rest and (mod, rest[0]) in reexports and seen < 8:
                target = reexports[(mod, rest[0])]
                if target[:len(mod)] != list(mod) or len(target) > len(mod) + 1:
                    return resolve(target + rest[1:], seen + 1)
            return mod
    return None


edges = {}
for m, text in mods.items():
    src = canon(m)
    paths = []
    for tree in re.findall(r"\buse\s+((?:crate|super|self)[^;]*);", text):
        paths += expand(tree)
    body = re.sub(r"\buse\s+[^;]*;", "", text)
    paths += re.findall(r"(?<![\w:])((?:crate|super)(?:::\w+)+)", body)
    for p in paths:
        if p.endswith("::*"):
            p = p[:-3]
        a = absolute(m, p)
        if a is None:
            continue
        target = resolve(a)
        if target is None:
            continue
        target = canon(target)
        # A module naming its own descendant is the facade or its own child.
        if target == src or target[: len(src)] == src:
            continue
        edges.setdefault(src, set()).add(target)

# Tarjan's strongly connected components.
index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]


def visit(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on.add(v)
    for w in edges.get(v, ()):
        if w not in index:
            visit(w)
            low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop()
            on.discard(w)
            comp.append(w)
            if w == v:
                break
        if len(comp) > 1:
            sccs.append(comp)


sys.setrecursionlimit(10000)
for v in sorted(set(edges) | {canon(m) for m in mods}):
    if v not in index:
        visit(v)

name = lambda m: "::".join(m) or "crate"
for comp in sccs:
    members = set(comp)
    print("circle:", ", ".join(sorted(name(m) for m in comp)))
    for a in sorted(comp):
        for b in sorted(edges.get(a, ())):
            if b in members:
                print(f"  {name(a)} -> {name(b)}")
print(f"{len(mods)} modules, {sum(len(v) for v in edges.values())} edges, {len(sccs)} circles")
sys.exit(1 if sccs else 0)
