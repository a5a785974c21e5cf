"""Write every reproduction cell under cfg/experiment/ from the generator's tables (scripts/experiments/).

    python scripts/make_experiments.py            # (re)write the generated files, drop stale ones
    python scripts/make_experiments.py --check    # exit 1 if a committed file differs from what this writes
    python scripts/make_experiments.py --list [PAPER]   # the experiment names, one a line

Edit the tables in scripts/experiments/<paper>.py, never a generated file: each one says so in its first lines.
"""
from __future__ import annotations

import argparse
import sys

from scripts.experiments import PAPERS, generated_on_disk, names, render_all
from scripts.experiments.cells import ROOT, GeneratorError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare with the committed files; write nothing")
    parser.add_argument("--list", nargs="?", const="", metavar="PAPER", help="print the experiment names")
    args = parser.parse_args(argv)
    if args.list is not None:
        if args.list and args.list not in PAPERS:
            parser.error(f"unknown paper '{args.list}'; use one of {', '.join(PAPERS)}")
        print("\n".join(names(args.list or None)))
        return 0
    try:
        files = render_all()
    except GeneratorError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    stale = [p for p in generated_on_disk() if p not in files]
    changed = [p for p, text in files.items() if not p.is_file() or p.read_text() != text]
    if args.check:
        for path in changed:
            print(f"differs: {path.relative_to(ROOT)}")
        for path in stale:
            print(f"stale: {path.relative_to(ROOT)}")
        return 1 if changed or stale else 0
    for path in changed:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(files[path])
    for path in stale:
        path.unlink()
    counts = {paper: len(names(paper)) for paper in PAPERS}
    print(f"{len(files)} cells ({', '.join(f'{p} {n}' for p, n in counts.items())}); "
          f"{len(changed)} written, {len(stale)} stale removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
