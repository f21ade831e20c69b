#!/usr/bin/env python3
"""Module arrows of remedyd: which module includes which.

A module is a file stem: src/X.c with include/X.h (store-backend.h is part
of store, config-section.h of config). Fails (exit 1) on an include circle between modules, or when a
module other than daemon/main includes daemon.h. Prints the circles."""
import os, re, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALIAS = {"store-backend": "store", "config-section": "config"}
INC = re.compile(r'^\s*#\s*include\s+"([^"]+)\.h"', re.M)


def module(stem):
    return ALIAS.get(stem, stem)


def graph():
    g = {}
    for sub in ("src", "include"):
        for name in sorted(os.listdir(os.path.join(ROOT, sub))):
            stem, ext = os.path.splitext(name)
            if ext not in (".c", ".h"):
                continue
            m = module(stem)
            with open(os.path.join(ROOT, sub, name)) as f:
                for dep in INC.findall(f.read()):
                    d = module(os.path.basename(dep))
                    if d != m:
                        g.setdefault(m, {}).setdefault(d, []).append(os.path.join(sub, name))
            g.setdefault(m, {})
    return g


def circles(g):
    """Tarjan's strongly connected components of more than one module."""
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
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
                out.append(sorted(comp))
    sys.setrecursionlimit(10000)
    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def main():
    g = graph()
    bad = 0
    for comp in circles(g):
        bad += 1
        print("include circle: " + " <-> ".join(comp))
        for a in comp:
            for b in comp:
                if b in g[a]:
                    print("  %s -> %s (%s)" % (a, b, ", ".join(sorted(set(g[a][b])))))
    for m, deps in sorted(g.items()):
        if "daemon" in deps and m not in ("daemon", "main"):
            bad += 1
            print("%s reaches into the daemon: %s include daemon.h" % (m, ", ".join(sorted(set(deps["daemon"])))))
    print("%d modules, %d arrows, %d problems" % (len(g), sum(len(d) for d in g.values()), bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
