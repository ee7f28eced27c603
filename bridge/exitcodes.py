"""The exit codes of the sidecar and the launcher, one enum (README, "Exit codes"). ``CONFIG`` (2)
is also what ``barbridge run`` exits with for a setting it refuses; the supervisor gives up on a
child's exit code that restarting cannot fix (:data:`GIVE_UP`). Standard library only."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    #: A runtime failure (restarting may help), or the launcher gave up.
    FAILURE = 1
    #: A configuration error, a refused TLS certificate, or a failed preflight: one sentence.
    CONFIG = 2
    #: Alpaca rejected the API keys.
    AUTH = 3
    #: The account's subscription does not include the feed (Alpaca's 409), or the stream ended.
    SUBSCRIPTION = 4
    #: Alpaca kept refusing the connection (connection limit exceeded).
    CONN_LIMIT = 5
    #: The sink failed at run time (the FIFO writer stopped); restarting may help.
    SINK = 6


#: Per supervised process, the exit codes that mean "restarting cannot help".
GIVE_UP = {"sidecar": frozenset({ExitCode.CONFIG, ExitCode.AUTH, ExitCode.SUBSCRIPTION}),
           "consumer": frozenset({ExitCode.CONFIG})}
