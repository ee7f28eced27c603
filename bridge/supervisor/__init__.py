"""The launcher's supervisor (``scripts/launch_live_trading.sh`` runs ``python -m bridge.supervisor``).

Modules: ``settings`` (command line + config.env + environment), ``runtime`` (locks, pid files,
leftover children), ``policy`` (backoff, give-up, flapping), ``children`` (processes that die with
the supervisor), ``alerts`` (``ALERT_CMD``), ``display`` (terminal and ``--status``), ``app`` (the
supervisor itself), ``symbol_change`` (``--subscribe``/``--unsubscribe``), ``cli`` (``--check``,
``--status``, entry point)."""
