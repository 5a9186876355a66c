"""``python -m carehub.bots.bench`` (what ``./scripts/bench`` runs)."""

import sys

from carehub.bots.bench.cli import main

sys.exit(main())
