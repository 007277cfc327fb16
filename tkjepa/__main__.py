"""`python -m tkjepa …` = `tkjepa …` (and what `torchrun -m tkjepa` starts)."""

import sys

from tkjepa.cli import main

sys.exit(main())
