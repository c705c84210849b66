"""`python -m scratchllm` runs the console command (torchrun uses this form)."""

import sys

from scratchllm.cli import main

sys.exit(main())
