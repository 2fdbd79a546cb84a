"""The bundled comfykit_download plugin."""
