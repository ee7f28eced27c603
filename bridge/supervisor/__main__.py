"""``python -m bridge.supervisor`` = ``scripts/launch_live_trading.sh`` once the environment is built."""

import os
import sys

from bridge.supervisor.cli import main

try:
    code = main()
    sys.stdout.flush()
except BrokenPipeError:
    # `--status | head -3`: the reader is gone; what it wanted was printed. No traceback, and no
    # second error when Python flushes stdout at exit.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    code = 0
sys.exit(code)
