"""A ComfyUI-compatible simulator for tests, the quickstart, and users' own CI."""
