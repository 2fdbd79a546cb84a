"""The single place the comfykit version is kept (hatch reads it at build time)."""

__version__ = "0.1.0"
