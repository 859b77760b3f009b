"""Small file-system questions that the pre-run check asks."""
import os


def unwritable_ancestor(path):
    """None when ``path`` can be made (or written into, if it exists) by this process, else the
    nearest existing folder above it (or ``path`` itself) that stands in the way."""
    existing = path
    while existing and not os.path.exists(existing):
        existing = os.path.dirname(existing)
    existing = existing or "."
    return None if os.path.isdir(existing) and os.access(existing, os.W_OK) else existing
