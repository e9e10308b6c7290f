"""`python -m srgrpo.cli` (what torchrun and accelerate launch run)."""

import sys

from srgrpo.cli import main

sys.exit(main())
