"""``python -m bridge`` = ``bridge/alpaca_websocket_bridge.py``."""

import sys

from bridge.alpaca_websocket_bridge import main

sys.exit(main())
