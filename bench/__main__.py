"""`python -m bench [--quick] [--only NAME ...]`: run the benchmarks and print PASS/FAIL.

Exit status 1 when any target fails. Generated inputs are cached in $GEOSAM_BENCH_DIR
(default ~/.cache/geosam-bench), never in the repository.
"""

from __future__ import annotations

import argparse
import sys
import time

from bench import accuracy, embedding_cache, model_speed, stitching, tiling
from bench.common import Outcome, data_dir, machine

BENCHMARKS = {
    "tiling": tiling.run,
    "embedding_cache": embedding_cache.run,
    "stitching": stitching.run,
    "model_speed": model_speed.run,
    "accuracy": accuracy.run,
}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="scaled-down sizes (minutes)")
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), help="run only these")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(f"inputs cached in {data_dir()}; {'quick' if args.quick else 'full'} sizes")
    outcomes: list[Outcome] = []
    for name in args.only or list(BENCHMARKS):
        start = time.perf_counter()
        outcome = BENCHMARKS[name](args.quick)
        outcome.figures.append(f"({name} took {time.perf_counter() - start:.0f} s)")
        outcome.print()
        outcomes.append(outcome)
    failed = [t for o in outcomes for t in o.targets if not t.passed]
    total = sum(len(o.targets) for o in outcomes)
    print(f"\n{total - len(failed)} of {total} targets passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
