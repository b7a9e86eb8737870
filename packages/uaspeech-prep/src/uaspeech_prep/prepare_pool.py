"""``prepare --workers N``: blocks over a spawn-context process pool, whose workers die with the main process."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path

from uaspeech_prep.prepare_block import run_block
from uaspeech_prep.prepare_outcome import ClipStatus, UttOutcome
from uaspeech_prep.prepare_plan import BlockJob


def run_pool(jobs: list[BlockJob], dst: Path, workers: int, outcomes: dict[str, UttOutcome], bar) -> None:
    """Blocks over a spawn-context process pool; workers report finished utterances through a queue.

    The workers die with this process, however it ends: Ctrl-C, SIGTERM or kill -9 (they would otherwise go
    on writing into the output and then idle forever). Work they finished is on disk under final names, so
    rerunning resumes."""
    import queue as queue_mod

    ctx = get_context("spawn")
    q = ctx.Queue()  # handed over at start (initargs): no manager process to outlive us
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=worker_init,
                               initargs=(q, os.getpid()))
    try:
        # Workers start inside submit() and import for seconds before worker_init can ignore Ctrl-C; one that
        # got it then would die mid-import and break the pool. Started with SIGINT blocked, they inherit the
        # block (it survives exec); ours is pending and arrives when the mask is restored just below.
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            futs = {pool.submit(_run_block_entry, job, str(dst)): job for job in jobs}
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        pending = set(futs)

        def drain() -> None:
            while True:
                try:
                    n = q.get_nowait()
                except queue_mod.Empty:
                    return
                bar.update(min(n, bar.total - bar.n))

        while pending:
            finished, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
            drain()
            for fut in finished:
                job = futs[fut]
                try:
                    _s, _b, outs = fut.result()
                except Exception as e:  # noqa: BLE001 - a crashed worker fails its block
                    outs = [UttOutcome(t.utt_id, clip_status=ClipStatus.FAILED,
                                       reasons=[f"worker: {type(e).__name__}: {e}"]) for t in job.tasks]
                for o in outs:
                    outcomes[o.utt_id] = o
                bar.set_postfix_str(f"{job.speaker} {job.block} done")
        drain()
    except BaseException:
        # interrupted: stop the workers now instead of waiting for their blocks to finish
        for proc in list(getattr(pool, "_processes", {}).values()):
            proc.terminate()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


_progress_queue = None  # set in each worker by worker_init


def worker_init(queue=None, parent_pid: int | None = None) -> None:
    """Set up a worker: progress queue, Ctrl-C left to the parent, death with the parent, one decoding thread
    (benchmarks/prep_bench.py sets up its process the same way)."""
    import cv2

    from uaspeech_prep.video_io import set_decode_threads

    global _progress_queue
    _progress_queue = queue
    # Ctrl-C goes to the whole process group: the parent alone handles it (and stops us). Ignored from here
    # on, so the block inherited from run_pool can be lifted.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    if parent_pid is not None:
        _die_with_parent(parent_pid)
    # one thread per worker: the pool already occupies the cores (OpenCV's pool and FFmpeg's decoding
    # threads would only oversubscribe them)
    cv2.setNumThreads(1)
    set_decode_threads(1)


def _die_with_parent(parent_pid: int) -> None:
    """Linux: the kernel kills us when the parent dies (PR_SET_PDEATHSIG); elsewhere a thread watches it."""
    import threading

    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, signal.SIGKILL, 0, 0, 0) == 0:  # 1 = PR_SET_PDEATHSIG
            if os.getppid() != parent_pid:  # the parent died before prctl took effect
                os._exit(1)
            return
    except (OSError, AttributeError):
        pass

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def _run_block_entry(job: BlockJob, root: str) -> tuple[str, str, list[UttOutcome]]:
    q = _progress_queue
    return job.speaker, job.block, run_block(job, root, progress=q.put if q is not None else None)
