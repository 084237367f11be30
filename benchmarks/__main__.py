"""``python -m benchmarks``: every benchmark, then a summary (see ``run_all.py``)."""

from benchmarks.run_all import main

raise SystemExit(main())
