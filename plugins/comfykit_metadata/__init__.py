"""The bundled comfykit_metadata plugin."""
