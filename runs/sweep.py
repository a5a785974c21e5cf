"""Hyperparameter sweeps on Ray Tune (`ray_runner.py`).

A search (`cfg/search/<name>.yaml`) names the task (train or distill), overrides applied to every trial,
and a space whose keys are Hydra override keys (a value such as `kd.terms.kd.temperature`, or a group
choice such as `kd` or `student`) with grid / choice / uniform / loguniform / randint. Each trial composes
its own config from those overrides and runs the CLI's own `run_train` / `run_distill`, reporting the
validation metrics every epoch. Trials run with resume=auto, so a retried or restored trial continues from
its run folder's last checkpoint, and a finished one is reused.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from errors import ConfigError, UserError, one_line
from runs.configs import ROOT, compose
from runs.records import RECORD_NAME
from runs.training import run_distill, run_train
from runs.validation import check_config, check_values

SPACE_KINDS = ("grid", "choice", "uniform", "loguniform", "randint")
SUMMARY_NAME = "sweep.json"


def metric_key(name: str) -> str:
    """Ray reads '/' in a metric name as nesting; trials report 'val/top1' as 'val_top1'."""
    return name.replace("/", "_")


def override_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(override_value(v) for v in value) + "]"
    return repr(value) if isinstance(value, float) else str(value)


def parameter_space(space: Mapping[str, Any]) -> dict[str, Any]:
    """cfg/search space -> Ray Tune sampling objects."""
    from ray import tune
    if not space:
        raise ConfigError("the search has an empty space; give search.space.<override key>: {grid: [...]} entries")
    built = {}
    for key, spec in space.items():
        if not isinstance(spec, Mapping) or len(spec) != 1 or next(iter(spec)) not in SPACE_KINDS:
            raise ConfigError(f"search.space.{key} must be one of {{{', '.join(f'{k}: ...' for k in SPACE_KINDS)}}}, "
                              f"got {spec!r}; e.g. {key}: {{grid: [1, 2, 4]}}")
        kind, args = next(iter(spec.items()))
        args = list(args)
        if kind in ("grid", "choice"):
            if not args:
                raise ConfigError(f"search.space.{key}.{kind} lists no values")
            built[key] = tune.grid_search(args) if kind == "grid" else tune.choice(args)
        else:
            if len(args) != 2 or not args[0] < args[1] or (kind == "loguniform" and args[0] <= 0):
                raise ConfigError(f"search.space.{key}.{kind} needs [low, high] with low < high"
                                  f"{' and low > 0' if kind == 'loguniform' else ''}; got {args}")
            built[key] = {"uniform": tune.uniform, "loguniform": tune.loguniform, "randint": tune.randint}[kind](*args)
    return built


class ReportToTune(pl.Callback):
    """Reports each training epoch's validation metrics to Ray Tune, once per epoch (a scheduler's rungs count
    these reports; a scheduler may stop the trial there). The evaluations after the fit (the last and best
    checkpoints on validation and test) report nothing: the trial's final report carries them."""

    def __init__(self) -> None:
        self.reports = 0

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or trainer.state.fn != "fit":
            return
        from ray import tune
        metrics = {metric_key(k): float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        tune.report({**metrics, "epoch": trainer.current_epoch, "run_dir": trainer.default_root_dir})
        self.reports += 1


def run_trial(params: dict, *, task: str, overrides: list[str], attempts_dir: str, cpus: float) -> None:
    """One trial: compose, run the entry point's function, report the final record."""
    import torch
    from ray import tune
    from runs.console import configure_console
    configure_console(verbose=False)  # a trial's log as a run's console: no Lightning banners, tips or INFO lines
    torch.set_num_threads(max(1, int(cpus)))  # trials side by side must not oversubscribe the cores
    trial_id = tune.get_context().get_trial_id()
    with open(Path(attempts_dir) / f"{trial_id}.jsonl", "a") as log:  # every (re)start of this trial
        log.write(json.dumps({"time": time.time(), "params": params}) + "\n")
    trial_overrides = [*overrides, *(f"{k}={override_value(v)}" for k, v in params.items()), "resume=auto"]
    cfg = compose(task, trial_overrides)
    reporter = ReportToTune()
    record = (run_distill if task == "distill" else run_train)(cfg, quiet=True, callbacks=[reporter])
    if not reporter.reports:  # a finished run reused (nothing trained): its record is the trial's one report
        final = {metric_key(k): v for k, v in record["last"].items() if isinstance(v, (int, float))}
        tune.report({**final, "run_dir": record["run_dir"], "epoch": record.get("epochs")})


def split_arguments(arguments: list[str]) -> tuple[list[str], list[str]]:
    """(the runner's own overrides: search=, tune.*, paths.*; the trials' overrides: everything else).
    paths.* go to both, so the runner and its trials agree on where outputs live."""
    runner, trials = [], []
    for argument in arguments:
        key = argument.lstrip("+~").split("=", 1)[0]
        if key == "search" or key.startswith(("search.", "tune.", "hydra.")):
            runner.append(argument)
        elif key.startswith("paths."):
            runner.append(argument)
            trials.append(argument)
        else:
            trials.append(argument)
    return runner, trials


def _scheduler(settings: DictConfig):
    from ray.tune.schedulers import ASHAScheduler, MedianStoppingRule
    name = str(settings.scheduler)  # checked with the other tune.* values (runs/validation.py)
    if name == "asha":
        return ASHAScheduler(time_attr="training_iteration", grace_period=int(settings.grace_period),
                             max_t=int(settings.max_t), reduction_factor=int(settings.reduction_factor))
    if name == "median":
        return MedianStoppingRule(time_attr="training_iteration", grace_period=int(settings.grace_period))
    return None


def check_resources(settings: DictConfig) -> None:
    """A local sweep asking for GPUs on a machine without one would wait forever for a GPU that never frees
    (Ray warns every ~35 s): refused before Ray starts, as a single run with trainer=gpu is."""
    gpu = float(settings.resources.gpu)
    if gpu > 0 and not settings.get("address"):
        import torch
        if not torch.cuda.is_available():
            raise ConfigError(f"tune.resources.gpu={settings.resources.gpu} asks for a GPU per trial, but this machine "
                              f"has none; drop it (tune.resources.gpu=0), or run on a cluster with GPUs "
                              f"(tune.address=auto)")


def plain_logs_off_terminal() -> None:
    """Where the output is a file or a pipe (a log, `tee`), Ray's worker lines come without colour codes and without
    its coloured "[repeated Nx]" folding, and Tune prints no status boxes. Before Ray is imported (it reads them
    then); a value already set is kept."""
    if not sys.stdout.isatty():
        for key, value in (("RAY_COLOR_PREFIX", "0"), ("RAY_DEDUP_LOGS", "0"), ("RAY_AIR_NEW_OUTPUT", "0")):
            os.environ.setdefault(key, value)


def _init_ray(settings: DictConfig) -> bool:
    """Starts (or joins) Ray for a sweep; False, leaving it as it is, where this process already has a Ray session
    (one its caller started, e.g. for several sweeps: each start costs seconds)."""
    import ray
    if ray.is_initialized():
        return False
    address = settings.get("address")
    if address:
        # a cluster: ship the code (not data, outputs or environments) to its workers
        ray.init(address=str(address), runtime_env={"working_dir": str(ROOT), "excludes": [
            ".git", ".venv", ".ci-venv", "outputs", "data", "*.ckpt"]}, ignore_reinit_error=True)
    else:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # keep a local Ray on 127.0.0.1
        cpus = settings.get("num_cpus")
        ray.init(num_cpus=int(cpus) if cpus else None, include_dashboard=False, ignore_reinit_error=True,
                 _node_ip_address="127.0.0.1", configure_logging=False,
                 runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "WANDB_MODE": os.environ.get("WANDB_MODE", "offline"),
                                           "OMP_WAIT_POLICY": os.environ["OMP_WAIT_POLICY"]}})  # runs/__init__.py
    return True


def run_sweep(runner_overrides: list[str], trial_overrides: list[str]) -> dict:
    """Compose the sweep, run it on Ray (local on loopback, or `tune.address`), return its summary."""
    plain_logs_off_terminal()
    from ray import tune
    cfg = compose("tune", runner_overrides)
    check_values(cfg)
    search, settings = cfg.search, cfg.tune
    check_resources(settings)
    if search.get("task") not in ("train", "distill"):
        raise ConfigError(f"search.task must be train or distill, got {search.get('task')!r}")
    storage = Path(str(settings.storage)).resolve()
    experiment = storage / str(settings.name)
    attempts = experiment / "attempts"
    resume = bool(settings.resume)
    if resume and not (experiment / "tuner.pkl").is_file():
        raise ConfigError(f"tune.resume=true but no sweep named {settings.name} was started in {storage}; "
                          f"drop tune.resume or check tune.name / paths.output_dir")
    if not resume and experiment.exists():
        raise ConfigError(f"a sweep named {settings.name} already exists in {experiment}; continue it with "
                          f"tune.resume=true, or start another with tune.name=NEW_NAME")
    # Trials run in other processes (and maybe machines), so every path they get is absolute.
    paths = {k: str(Path(str(v)).resolve()) for k, v in OmegaConf.to_container(cfg.paths, resolve=True).items()}
    overrides = [*[str(o) for o in search.get("overrides") or []], *trial_overrides,
                 *(f"paths.{k}={v}" for k, v in paths.items())]
    space = parameter_space(OmegaConf.to_container(search.space, resolve=True))
    # Fail fast, before Ray starts, on bad keys and values: every value the space can give, checked as a trial's is.
    for variant in trial_variants(OmegaConf.to_container(search.space, resolve=True)):
        chosen = [f"{k}={override_value(v)}" for k, v in variant.items()]
        try:
            check_config(compose(search.task, [*overrides, *chosen]))
        except UserError as error:
            raise ConfigError(f"a trial of search={search.name} ({' '.join(chosen)}) would be refused: "
                              f"{one_line(error)}") from None

    started = _init_ray(settings)
    try:
        attempts.mkdir(parents=True, exist_ok=True)
        trainable = tune.with_resources(
            tune.with_parameters(run_trial, task=str(search.task), overrides=overrides, attempts_dir=str(attempts),
                                 cpus=float(settings.resources.cpu)),
            {"cpu": float(settings.resources.cpu), "gpu": float(settings.resources.gpu)})
        metric, mode = metric_key(str(settings.metric)), str(settings.mode)
        if resume:
            tuner = tune.Tuner.restore(str(experiment), trainable, resume_unfinished=True, resume_errored=True)
        else:
            tuner = tune.Tuner(
                trainable, param_space=space,
                tune_config=tune.TuneConfig(metric=metric, mode=mode, scheduler=_scheduler(settings),
                                            num_samples=int(settings.num_samples),
                                            max_concurrent_trials=settings.get("max_concurrent")),
                run_config=tune.RunConfig(name=str(settings.name), storage_path=str(storage), verbose=0,
                                          failure_config=tune.FailureConfig(max_failures=int(settings.max_failures))))
        results = tuner.fit()
        summary = summarise(results, list(OmegaConf.to_container(search.space)), metric, mode, attempts)
    finally:
        if started:
            import ray
            ray.shutdown()
    (experiment / SUMMARY_NAME).write_text(json.dumps(summary, indent=2, default=str))
    summary["path"] = str(experiment / SUMMARY_NAME)
    return summary


def first_value(spec: Mapping[str, Any]) -> Any:
    return space_values(spec)[0]


def space_values(spec: Mapping[str, Any]) -> list[Any]:
    """The values a dimension can give that bound what its trials see: each of a grid or choice, the ends of a
    range (randint's upper end is exclusive, as in Ray)."""
    kind, args = next(iter(spec.items()))
    args = list(args)
    if kind == "randint":
        return [args[0], args[1] - 1]
    return args


def trial_variants(space: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The trials whose configs are checked before Ray starts: the first values of every dimension, then each
    other value of one dimension with the others at their first (every value checked once, not every
    combination, which may be thousands)."""
    first = {key: first_value(spec) for key, spec in space.items()}
    return [first] + [{**first, key: value} for key, spec in space.items() for value in space_values(spec)[1:]]


def finished(run_dir: str | None) -> bool:
    """A trial finished when its run folder holds a record (written once, at the end of the run)."""
    return bool(run_dir) and (Path(run_dir) / RECORD_NAME).is_file()


def summarise(results, varied: list[str], metric: str, mode: str, attempts: Path) -> dict:
    trials = []
    for result in results:
        trial_dir = Path(result.path).name if result.path else ""
        metrics = result.metrics or {}
        log = next((f for f in attempts.glob("*.jsonl") if f.stem in trial_dir), None)
        trials.append({
            "params": {k: (result.config or {}).get(k) for k in varied},
            "metric": metrics.get(metric),
            "status": "error" if result.error else "finished" if finished(metrics.get("run_dir")) else "stopped early",
            "error": str(result.error).strip().splitlines()[-1] if result.error else None,
            "attempts": len(log.read_text().splitlines()) if log else None,
            "run_dir": metrics.get("run_dir"), "epochs_reported": metrics.get("training_iteration"),
            "trial": trial_dir})
    for trial in trials:
        if trial["run_dir"]:
            trial["record"] = str(Path(trial["run_dir"]) / RECORD_NAME)
    ranked = sorted((t for t in trials if t["metric"] is not None), key=lambda t: t["metric"],
                    reverse=(mode == "max"))
    return {"metric": metric, "mode": mode, "varied": varied, "best": ranked[0] if ranked else None,
            "trials": ranked + [t for t in trials if t["metric"] is None]}


def shown(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def short_names(keys: list[str]) -> dict[str, str]:
    """Each dotted key by its shortest ending that no other key shares (kd.terms.kd.temperature -> temperature)."""
    names = {}
    for key in keys:
        parts = key.split(".")
        for start in range(len(parts) - 1, -1, -1):
            name = ".".join(parts[start:])
            if not any(other != key and (other == name or other.endswith("." + name)) for other in keys):
                break
        names[key] = name
    return names


def print_summary(summary: dict, top: int) -> None:
    """The best trials, readable at 80 columns: short parameter names, the metric as the tables show it (percent
    for accuracies), each trial's run folder by name (the summary file has the full paths)."""
    from rich.console import Console
    from rich.table import Table

    from tasks.units import shown as shown_metric, shown_in_percent
    metric = summary["metric"]
    names = short_names(summary["varied"])
    table = Table(title=f"best trials by {metric}{' (%)' if shown_in_percent(metric) else ''}, {summary['mode']}",
                  title_justify="left")
    for key in summary["varied"]:
        table.add_column(names[key])
    for column in (metric, "status", "tries", "run folder"):
        table.add_column(column, overflow="fold")
    for trial in summary["trials"][:top] + [t for t in summary["trials"][top:] if t["status"] == "error"]:
        value = trial["metric"]
        table.add_row(*(shown(trial["params"].get(k)) for k in summary["varied"]),
                      "-" if value is None else shown_metric(metric, value),
                      trial["status"] + (f": {trial['error']}" if trial["error"] else ""), str(trial["attempts"]),
                      Path(trial["run_dir"]).name if trial["run_dir"] else "-")
    console = Console(width=None if sys.stdout.isatty() else 80)
    console.print(table)
    console.print(f"summary, every trial with its record: {summary['path']}")
