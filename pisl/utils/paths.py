"""Small file-system questions that the pre-run check asks."""
import os
import tempfile


def folder_creation_problem(path):
    """None when ``path`` is a folder this process can write into, or can make; else why not,
    in a few words. It finds out by trying (making the folder and a file in it), because
    permission bits do not tell: as root every path looks writable, yet a read-only mount or a
    pseudo file system such as /proc refuses. What it made is removed again."""
    made, folder = [], os.path.abspath(path)
    while not os.path.exists(folder):
        made.append(folder)
        folder = os.path.dirname(folder)
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        where = f" ({err.filename})" if err.filename and os.path.abspath(err.filename) != os.path.abspath(path) else ""
        return f"{err.strerror or err}{where}"
    finally:
        for folder in made:  # deepest first
            try:
                os.rmdir(folder)
            except OSError:
                pass
    return None
