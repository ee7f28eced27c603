"""The wire protocol's constants and conversions, from the extension (``src/wire.rs`` is the one
implementation: README, "Wire protocol")."""

from __future__ import annotations

import barbridge  # type: ignore[import-not-found]

MAX_LINE_BYTES: int = barbridge.MAX_LINE_BYTES
MINUTE_MS: int = barbridge.MINUTE_MS  # every bar is a minute bar: timestamp_ms is a multiple of this
WireError = barbridge.WireError
encode_bar = barbridge.encode_bar  # bar dict → wire line (bytes), WireError for a bad bar
decode_line = barbridge.decode_line  # wire line → bar dict, None for a control line; WireError
_ts_to_ms = barbridge.timestamp_ms  # Alpaca timestamp (RFC 3339, msgpack.Timestamp, ...) → epoch ms
