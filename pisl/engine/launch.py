"""Start one process per device (or per CPU worker with gloo), or join a torchrun group."""
import logging
import os
import socket
import sys
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _backend():
    return "nccl" if torch.cuda.is_available() else "gloo"


def launch(main_func, num_processes, args=(), timeout_minutes=120.0):
    """Run ``main_func(*args)`` in ``num_processes`` processes (one per GPU, or CPU processes
    talking over gloo). Under torchrun (``WORLD_SIZE`` set) join its group instead.
    ``timeout_minutes``: how long a process waits at a collective (``DIST.TIMEOUT_MINUTES``)."""
    timeout = timedelta(minutes=timeout_minutes)
    if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:
        dist.init_process_group(_backend(), timeout=timeout)
        _set_cuda_device(int(os.environ.get("LOCAL_RANK", 0)))
        return _run_in_group(main_func, args)
    if num_processes <= 1:
        return main_func(*args)
    url = f"tcp://127.0.0.1:{_free_port()}"
    # When one process dies, spawn stops the others and logs each stop as a warning; the caller
    # reports the failure itself (describe_process_failure), once.
    logging.getLogger("torch.multiprocessing.spawn").setLevel(logging.ERROR)
    mp.spawn(_worker, nprocs=num_processes, args=(main_func, num_processes, url, args, timeout), daemon=False)


def _set_cuda_device(local_rank):
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank % torch.cuda.device_count())


def _worker(rank, main_func, world_size, url, args, timeout):
    dist.init_process_group(_backend(), init_method=url, world_size=world_size, rank=rank, timeout=timeout)
    _set_cuda_device(rank)
    if not torch.cuda.is_available():
        # CPU processes share the cores; without this each would start one thread per core.
        torch.set_num_threads(max(1, torch.get_num_threads() // world_size))
    _run_in_group(main_func, args)


def _run_in_group(main_func, args):
    """``main_func(*args)`` in a process of a group, which it leaves at the end. A process that
    stops with an exit status of its own (``SystemExit``: it has said why) leaves at once,
    without tearing down the group or the interpreter: a peer may still be inside a collective,
    and the backend's threads then abort the process on teardown ("terminate called without an
    active exception", SIGABRT), which would read as a second, unrelated failure."""
    try:
        return main_func(*args)
    except SystemExit as stop:
        if stop.code:
            logging.shutdown()  # flush the run's log files
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(stop.code if isinstance(stop.code, int) else 1)
        raise
    finally:
        dist.destroy_process_group()


def describe_process_failure(err):
    """``(rank, how, traceback)`` of a process that ``launch`` started and that died:
    ``err`` is the ``torch.multiprocessing.ProcessException`` that spawn raised. ``how`` is one
    phrase (the signal, the exit status, or the exception's last line); ``traceback`` is the
    process's own traceback, or "" when it had none (killed)."""
    if isinstance(err, mp.ProcessRaisedException):
        trace = err.msg.split("terminated with the following error:", 1)[-1].strip()
        lines = [line for line in trace.splitlines() if line.strip()]
        return err.error_index, f"failed with {lines[-1] if lines else 'an exception'}", trace
    if getattr(err, "signal_name", None):
        return err.error_index, f"was killed by {err.signal_name} (out of memory, or a kill)", ""
    return err.error_index, f"exited with status {err.exit_code}", ""
