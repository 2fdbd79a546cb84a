"""The bundled comfykit_monitor plugin."""
