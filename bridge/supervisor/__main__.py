"""``python -m bridge.supervisor`` = ``scripts/launch_live_trading.sh`` once the environment is built."""

import sys

from bridge.supervisor.cli import main

sys.exit(main())
