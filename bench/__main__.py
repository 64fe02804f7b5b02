"""``python -m bench``: every benchmark case, one report (``docs/benchmarks.md``); see :mod:`bench.suite`."""

from bench.suite import main

raise SystemExit(main())
