"""The project logger: coloured console on the main process, plain text file per rank."""
import logging
import os
import sys

from termcolor import colored

from . import comm


class _ColorfulFormatter(logging.Formatter):
    def formatMessage(self, record):
        msg = super().formatMessage(record)
        if record.levelno >= logging.ERROR:
            return colored("ERROR ", "red", attrs=["bold"]) + msg
        if record.levelno == logging.WARNING:
            return colored("WARNING ", "yellow", attrs=["bold"]) + msg
        return msg


def setup_logger(output_dir=None, name="pisl"):
    """Configure the ``pisl`` logger (and projects' loggers, which propagate to the root)."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # it logs every CPU-feature probe
    for handler in list(root.handlers):
        if getattr(handler, "_pisl", False):
            root.removeHandler(handler)
    fmt = "[%(asctime)s %(name)s]: %(message)s"
    datefmt = "%m/%d %H:%M:%S"
    rank = comm.get_rank()
    if rank == 0:
        console = logging.StreamHandler(sys.stdout)
        console.setFormatter(_ColorfulFormatter(colored("[%(asctime)s %(name)s]: ", "green") + "%(message)s", datefmt))
        console._pisl = True
        root.addHandler(console)
    if output_dir:
        os.makedirs(output_dir, exist_ok=True)
        filename = os.path.join(output_dir, "log.txt" if rank == 0 else f"log.rank{rank}.txt")
        file_handler = logging.FileHandler(filename)
        file_handler.setFormatter(logging.Formatter(fmt, datefmt))
        file_handler._pisl = True
        root.addHandler(file_handler)
    return logging.getLogger(name)
