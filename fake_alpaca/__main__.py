"""``python -m fake_alpaca``: run the fake Alpaca server until SIGTERM/SIGINT."""

import sys

from fake_alpaca.server import main

sys.exit(main())
