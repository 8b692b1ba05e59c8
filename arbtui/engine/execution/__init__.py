"""Execution: quotes, the pair and leg model, the risk ledger, the launch guard, the pair process and
the executor that commands them (see :mod:`arbtui.engine.execution.executor`)."""

from __future__ import annotations

from arbtui.engine.execution.executor import ConfirmRefusedError, Executor
from arbtui.engine.execution.model import CLORDID_MAX, client_order_id

__all__ = ["CLORDID_MAX", "ConfirmRefusedError", "Executor", "client_order_id"]
