"""The bundled comfykit_cli plugin."""
