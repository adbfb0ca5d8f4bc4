"""Entry point of one measurement in its own process: `python -m bench.child mod:func JSON`."""

from __future__ import annotations

import importlib
import json
import sys

from bench.common import peak_rss_mib


def main() -> None:
    target, kwargs = sys.argv[1], json.loads(sys.argv[2])
    module, function = target.split(":")
    result = getattr(importlib.import_module(f"bench.{module}"), function)(**kwargs)
    result["peak_rss_mib"] = peak_rss_mib()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
