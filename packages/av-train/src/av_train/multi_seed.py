"""Multi-seed training: the same config trained for seeds S..S+N-1 as runs ``<train_id>_<seed>``.

``av-cli train-multi-seed CONFIG --num_seeds N --start_seed S [key=value ...]`` (the command line is
``av_train.multi_seed_command``; this module is the runner). Each run gets ``seed: <seed>`` and
``train_id: <train_id>_<seed>``; ``{seed}`` in ``pt_audio_ckpt`` / ``pt_video_ckpt`` is replaced by that
seed, so an audio-visual multi-seed run starts each seed from the audio-only run of the same seed
(docs/MULTI_SEED.md).

Where the seeds run:
- several GPUs visible and the config asks for one device per run (``devices: auto`` or ``1``, one
  node): seeds run in parallel, one per GPU, each in its own process with ``CUDA_VISIBLE_DEVICES``
  set to its GPU (logs in ``results/<train_name>/<train_id>_<seed>/multi_seed.log``);
- a config that is itself distributed (``devices`` > 1, ``num_nodes`` > 1 or a ``ddp`` strategy):
  seeds run one after another, each in its own process (Lightning's DDP launcher re-runs the
  command that started it, which must be the single-run trainer);
- otherwise: one after another in this process.

A seed that fails is reported (with its error) and the others go on; the summary (per seed and mean
+- std over the seeds that finished, av-eval's statistics: one seed has no std) is written to
``results/<train_name>/<train_id>_multi_seed.{json,csv,md}``.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import queue
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from av_eval import METRICS, Report
from av_eval import summarize as summarize_values
from av_train.config import ConfigError, TrainingConfig

log = logging.getLogger(__name__)


@dataclass
class SeedResult:
    seed: int
    train_id: str
    ok: bool
    seconds: float
    error: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)  # total wer/cer/wsr and per level
    best_checkpoint: str | None = None
    gpu: int | None = None


def seed_config(cfg: TrainingConfig, seed: int) -> TrainingConfig:
    """The config of one seed: ``seed`` set, ``_<seed>`` appended to ``train_id``."""
    return replace(cfg, seed=seed, train_id=f"{cfg.train_id}_{seed}")


def visible_gpus(cfg: TrainingConfig) -> list[int]:
    """CUDA devices this config may use (none when it asks for the CPU)."""
    if cfg.accelerator not in ("auto", "gpu", "cuda"):
        return []
    try:
        import torch

        return list(range(torch.cuda.device_count()))
    except Exception:  # noqa: BLE001 - a broken CUDA install means no GPU
        return []


def is_distributed(cfg: TrainingConfig) -> bool:
    devices = cfg.devices
    many = isinstance(devices, int) and devices > 1 or isinstance(devices, str) and devices not in ("auto", "1")
    return many or cfg.num_nodes > 1 or "ddp" in cfg.strategy or "fsdp" in cfg.strategy or "deepspeed" in cfg.strategy


def plan(cfg: TrainingConfig, gpus: list[int], sequential: bool = False) -> str:
    """'parallel' (one seed per GPU), 'subprocess' (one by one, own process) or 'inprocess'."""
    if is_distributed(cfg):
        return "subprocess"
    if not sequential and len(gpus) > 1 and cfg.devices in ("auto", 1) and cfg.num_nodes == 1:
        return "parallel"
    return "inprocess"


def _metrics_of(report) -> dict[str, float]:
    out = {m: getattr(report.total, m) for m in METRICS}
    for level, s in report.per_level.items():
        out.update({f"{m}_{level}": getattr(s, m) for m in METRICS})
    return out


def _metrics_from_file(results_dir: Path) -> dict[str, float]:
    path = results_dir / "metrics.json"
    if not path.is_file():
        return {}
    try:
        return _metrics_of(Report.from_dict(json.loads(path.read_text(encoding="utf-8"))))
    except (ValueError, KeyError, TypeError, AttributeError) as e:  # half-written or foreign file
        log.warning("warning: %s: unreadable metrics (%s: %s); this seed is left out of the summary. Validate the "
                    "seed again (rerun the same command) to rewrite it.", path, type(e).__name__, e)
        return {}


def _best(cfg: TrainingConfig) -> str | None:
    best = cfg.checkpoint_dir / "best.ckpt"
    return str(best) if best.is_file() else None


def run_seed_inprocess(cfg: TrainingConfig) -> SeedResult:
    from av_train.pipeline import main_train

    t0 = time.perf_counter()
    try:
        result = main_train(cfg)
    except Exception as e:  # noqa: BLE001 - a failed seed is reported, the others go on
        from av_common.cli_errors import USER_ERRORS, describe

        if isinstance(e, USER_ERRORS):  # bad input or a diverged run: one line, as every command says it
            log.error("seed %d (%s): %s", cfg.seed, cfg.train_id, describe(e))
        else:  # a programming error keeps its traceback: that is a bug to report
            log.error("%s", traceback.format_exc().rstrip("\n"))
        return SeedResult(cfg.seed, cfg.train_id, False, time.perf_counter() - t0, f"{type(e).__name__}: {e}")
    metrics = _metrics_of(result.report) if result.report is not None else {}
    return SeedResult(cfg.seed, cfg.train_id, True, time.perf_counter() - t0, metrics=metrics, best_checkpoint=_best(cfg))


def seed_command(config_path: str, overrides: dict, seed_cfg: TrainingConfig, extra: dict | None = None) -> list[str]:
    """The single-run command of one seed (``python -m av_train.cli CONFIG key=value ...``)."""
    values = {**overrides, **seed_overrides_from(seed_cfg), **(extra or {})}
    return [sys.executable, "-m", "av_train.cli", str(config_path), *(f"{k}={json.dumps(v)}" for k, v in values.items())]


def seed_overrides_from(seed_cfg: TrainingConfig) -> dict:
    return {"seed": seed_cfg.seed, "train_id": seed_cfg.train_id}


def run_seed_subprocess(
    cmd: list[str], seed_cfg: TrainingConfig, gpu: int | None = None, log_file: Path | None = None
) -> SeedResult:
    env = dict(os.environ)
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    t0 = time.perf_counter()
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(log_file, "w", encoding="utf-8") as f:
            rc = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT).returncode
    else:
        rc = subprocess.run(cmd, env=env).returncode
    seconds = time.perf_counter() - t0
    if rc in (143, -15):  # the seed was terminated (SIGTERM): the whole job is being stopped, not one seed failing
        log.error("seed %s (%s) was terminated; stopping. Run the same command again to resume (finished seeds are "
                  "kept).", seed_cfg.seed, seed_cfg.train_id)
        raise SystemExit(143)
    if rc != 0:
        where = f"; log: {log_file}" if log_file is not None else ""
        tail = ""
        if log_file is not None and log_file.is_file():
            lines = log_file.read_text(encoding="utf-8", errors="replace").strip().splitlines()
            tail = f" (last line: {lines[-1].strip()})" if lines else ""
        return SeedResult(seed_cfg.seed, seed_cfg.train_id, False, seconds, f"exit status {rc}{tail}{where}", gpu=gpu)
    return SeedResult(seed_cfg.seed, seed_cfg.train_id, True, seconds, metrics=_metrics_from_file(seed_cfg.results_dir),
                      best_checkpoint=_best(seed_cfg), gpu=gpu)


def run_on_slots(seeds: list[int], slots: list[int], job: Callable[[int, int], SeedResult],
                 on_done: Callable[[SeedResult], None] | None = None) -> list[SeedResult]:
    """Run ``job(seed, slot)`` for every seed, at most one job per slot at a time (a slot is a GPU).
    Results come back in seed order."""
    free: queue.Queue[int] = queue.Queue()
    for s in slots:
        free.put(s)
    lock = threading.Lock()

    def work(seed: int) -> SeedResult:
        slot = free.get()
        try:
            result = job(seed, slot)
        finally:
            free.put(slot)
        if on_done is not None:
            with lock:
                on_done(result)
        return result

    with ThreadPoolExecutor(max_workers=max(1, len(slots))) as pool:
        return list(pool.map(work, seeds))


def run_multi_seed(
    cfg: TrainingConfig,
    num_seeds: int,
    start_seed: int = 1,
    config_path: str | None = None,
    overrides: dict | None = None,
    sequential: bool = False,
    gpus: list[int] | None = None,
) -> list[SeedResult]:
    """Train ``cfg`` for seeds ``start_seed .. start_seed + num_seeds - 1`` (see the module doc).

    ``config_path`` + ``overrides`` are needed for the parallel / subprocess modes (the child
    processes load the same file with the same overrides); ``gpus`` defaults to the visible GPUs.
    """
    from tqdm.auto import tqdm

    if num_seeds < 1:
        raise ConfigError(f"--num_seeds must be >= 1, got {num_seeds}")
    seeds = list(range(start_seed, start_seed + num_seeds))
    gpus = visible_gpus(cfg) if gpus is None else gpus
    mode = plan(cfg, gpus, sequential)
    if mode != "inprocess" and config_path is None:
        raise ValueError(f"{mode} multi-seed runs need the config file path (child processes load it)")
    overrides = overrides or {}
    where = {"parallel": f"in parallel on GPUs {gpus}", "subprocess": "one after another (distributed runs)",
             "inprocess": "one after another"}[mode]
    log.info("multi-seed: %s_{%s..%s} (%s seed(s)), %s", cfg.train_id, seeds[0], seeds[-1], num_seeds, where)
    bar = tqdm(total=num_seeds, desc="seeds", unit="seed", disable=not cfg.progress_bar)

    def report(r: SeedResult) -> None:
        state = "done" if r.ok else f"FAILED: {r.error}"
        bar.write(f"seed {r.seed} ({r.train_id}) {state} [{r.seconds:.0f} s]")
        bar.update(1)

    results: list[SeedResult] = []
    if mode == "parallel":
        def job(seed: int, gpu: int) -> SeedResult:
            scfg = seed_config(cfg, seed)
            cmd = seed_command(config_path, overrides, scfg, {"devices": 1, "progress_bar": False})
            return run_seed_subprocess(cmd, scfg, gpu=gpu, log_file=scfg.results_dir / "multi_seed.log")

        results = run_on_slots(seeds, gpus, job, on_done=report)
    else:
        for seed in seeds:
            scfg = seed_config(cfg, seed)
            if mode == "subprocess":
                r = run_seed_subprocess(seed_command(config_path, overrides, scfg), scfg)
            else:
                r = run_seed_inprocess(scfg)
            report(r)
            results.append(r)
    bar.close()
    return results


def summarize(results: list[SeedResult]) -> dict:
    """Per-seed rows and mean / std / n over the seeds that finished with scores.

    The statistics are av-eval's (``av_eval.summarize``, as in validate-ensemble and ``av-eval eval``): the
    sample std (n - 1), which one seed does not have: its std is None (null in the JSON), not 0."""
    done = [r for r in results if r.ok and r.metrics]
    keys = sorted({k for r in done for k in r.metrics}, key=lambda k: (k not in METRICS, k))
    agg = {}
    for k in keys:
        stat = summarize_values([r.metrics[k] for r in done if k in r.metrics]).as_dict()
        agg[k] = {field: stat[field] for field in ("mean", "std", "n")}
    return {
        "seeds": [r.__dict__ for r in results],
        "failed": [r.seed for r in results if not r.ok],
        "aggregate": agg,
    }


def summary_markdown(results: list[SeedResult], summary: dict) -> str:
    lines = ["| seed | run | status | WER | CER | WSR | seconds |", "|---:|---|---|---:|---:|---:|---:|"]
    for r in results:
        cells = [f"{100 * r.metrics[m]:.1f}" if m in r.metrics else "-" for m in METRICS]
        status = "ok" if r.ok else f"failed: {r.error}"
        lines.append(f"| {r.seed} | {r.train_id} | {status} | " + " | ".join(cells) + f" | {r.seconds:.0f} |")
    agg = summary["aggregate"]
    if agg:
        cells = [_mean_std_cell(agg[m]) if m in agg else "-" for m in METRICS]
        n = agg[METRICS[0]]["n"] if METRICS[0] in agg else 0
        lines.append(f"| mean +- std | {n} seed(s) | | " + " | ".join(cells) + " | |")
    return "\n".join(lines) + "\n"


def _mean_std_cell(stat: dict) -> str:
    """"mean +- std" in percent; just the mean for one seed (no std), as av-eval's summary tables write it."""
    if stat["std"] is None:
        return f"{100 * stat['mean']:.1f}"
    return f"{100 * stat['mean']:.1f} +- {100 * stat['std']:.1f}"


def write_summary(cfg: TrainingConfig, results: list[SeedResult]) -> dict[str, Path]:
    from av_common.files import atomic_write_text

    summary = summarize(results)
    stem = Path(cfg.output_root) / "results" / cfg.train_name / f"{cfg.train_id}_multi_seed"
    rows = [{"seed": r.seed, "train_id": r.train_id, "ok": r.ok, "error": r.error or "", "seconds": round(r.seconds, 1),
             **{m: r.metrics.get(m, "") for m in METRICS}} for r in results]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return {
        "json": atomic_write_text(stem.with_suffix(".json"), json.dumps(summary, indent=2) + "\n"),
        "csv": atomic_write_text(stem.with_suffix(".csv"), buf.getvalue()),
        "md": atomic_write_text(stem.with_suffix(".md"), summary_markdown(results, summary)),
    }
