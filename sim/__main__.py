"""``python -m sim`` is the ``crossover`` command."""

from sim.cli import main

raise SystemExit(main())
