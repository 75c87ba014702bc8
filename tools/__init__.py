"""Dev-only tools (demo, stack, generators): run from a checkout (`python -m tools.…`), never
installed, never in the image. They may import anything; nothing installed imports them (tests and bench may)."""
