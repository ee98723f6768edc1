"""`python -m gptkit ...` (and `torchrun -m gptkit train ...`): the same CLI as the `gptkit` command."""

import sys

from gptkit.cli import main

sys.exit(main())
