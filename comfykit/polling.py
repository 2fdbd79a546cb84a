"""The polling event source: live job events synthesized from HTTP when no WebSocket source is active."""

from __future__ import annotations
