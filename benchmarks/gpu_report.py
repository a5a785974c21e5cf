"""The Markdown page of the GPU check's results (benchmarks/gpu_check.py; its JSON, as written so far)."""
from __future__ import annotations

from benchmarks.training import OVERHEAD, SIDE_LETTERS, figure, markdown_table, summarise

BUSY_DEFINITION = ("GPU busy: the share of the span from the first to the last GPU activity of the profiled steps "
                   "during which a kernel, copy or set runs (torch.profiler, CUDA activity only); gaps between "
                   "steps (data, host syncs, logging) count as idle.")


def side_rows(section: dict, sides: list[str]) -> list[dict]:
    """One row per (method, batch) from the section's per-run results ("method/batch/side" keys)."""
    rows, seen = [], []
    for key in section:
        if key.count("/") == 2 and key.rsplit("/", 1)[0] not in seen:
            seen.append(key.rsplit("/", 1)[0])
    for method_batch in seen:
        method, batch = method_batch.split("/")
        runs = {side: [section[f"{method_batch}/{side}"]] for side in sides
                if "samples_per_s" in section.get(f"{method_batch}/{side}", {})}
        rows.append({**summarise(method, runs), "batch": int(batch)})
    return rows


def targets(data: dict) -> list[tuple[str, str, str]]:
    """(target, measured, met) for the GPU speed targets, from what was measured (a dry run: not applicable)."""
    sections, dry_run = data["sections"], data["environment"]["dry_run"]
    plain = side_rows(sections.get("sides", {}), ["lightning", "loop", "torchdistill"])
    fast = side_rows(sections.get("fast_path", {}), ["lightning", "loop"])
    found = []

    def add(name: str, values: list[float], threshold: float, form: str) -> None:
        if not values:
            found.append((name, "-", "not measured"))
        else:
            worst = min(values)
            met = "n/a (dry run)" if dry_run else "yes" if worst >= threshold else "no"
            found.append((name, f"{form.format(worst)} (worst of {len(values)})", met))
    add("(a)/(b) >= 0.95 at fp32", [r["ratio_a_over_loop"] for r in plain if "ratio_a_over_loop" in r], 0.95, "{:.3f}")
    overhead = side_rows(sections.get("overhead", {}), ["lightning", "loop", "torchdistill"])
    add("overhead pair: (a)/(b) >= 0.95", [r["ratio_a_over_loop"] for r in overhead if "ratio_a_over_loop" in r],
        0.95, "{:.3f}")
    add("overhead pair: (a)/(c) >= 1.0", [r["ratio_a_over_torchdistill"] for r in overhead
                                          if "ratio_a_over_torchdistill" in r], 1.0, "{:.3f}")
    plain_c = {(r["method"], r["batch"]): r.get("torchdistill_samples_per_s") for r in plain}
    add("fast (a) / fp32 (c) >= 1.5, same pair and batch",
        [r["lightning_samples_per_s"] / plain_c[r["method"], r["batch"]] for r in fast
         if r.get("lightning_samples_per_s") and plain_c.get((r["method"], r["batch"]))], 1.5, "{:.2f}x")
    kd_fast = [r["lightning_samples_per_s"] for r in fast if r["method"] == "kd" and r.get("lightning_samples_per_s")]
    add("KD fast (a) >= 20,000 images/s", kd_fast, 20_000, "{:,.0f}")
    add("GPU busy >= 90% of the fast (a) step", [r["lightning_gpu_busy"] for r in fast
                                                 if r.get("lightning_gpu_busy") is not None], 0.90, "{:.0%}")
    epoch = sections.get("epoch", {}).get("run", {})
    minutes = [epoch["recipe_240_epochs_min"]] if "recipe_240_epochs_min" in epoch else []
    found.append(("240-epoch KD recipe, with validation", f"{minutes[0]:.1f} min" if minutes else "-",
                  "n/a (dry run)" if dry_run else "aim: under 10 min + validation" if minutes else "not measured"))
    return found


def problems(data: dict) -> list[str]:
    lines = []
    for section, results in data["sections"].items():
        for key, value in results.items():
            if isinstance(value, dict) and ("error" in value or "skipped" in value):
                lines.append(f"- {section} {key}: {value.get('error') or 'skipped: ' + value['skipped']}")
    return lines


def markdown_report(data: dict) -> str:
    env = data["environment"]
    device = (f"{env.get('gpu')}, CUDA {env.get('cuda')}" if env["plan"]["device"] == "cuda"
              else f"CPU, torch threads {env['torch_threads']} (dry run: tiny sizes, CUDA-only figures n/a)")
    plan = env["plan"]
    torchdistill = env["torchdistill"] or "not installed"
    lines = [f"# GPU check{' (dry run)' if env['dry_run'] else ''}", "",
             f"`{data['command']}`", "",
             f"{device}; torch {env['torch']}, Lightning {env['lightning']}, torchdistill {torchdistill}; "
             f"{plan['teacher']} -> {plan['student']}; {plan['steps']} timed steps after {plan['warmup']} (fast path: "
             f"{plan['fast_warmup']}), GPU busy over {plan['profile_steps']} more. "
             f"Total {figure(data.get('total_s'), '{:.0f} s')}.",
             "", BUSY_DEFINITION, "", "## Targets", "", "| target | measured | met |", "|---|---|---|"]
    lines += [f"| {name} | {value} | {met} |" for name, value, met in targets(data)]
    sections = data["sections"]
    compiled = "compile, " if plan["compile"] else "no compile (dry run), "
    plain_sides = ["lightning", "loop", *(["torchdistill"] if env["torchdistill"] else [])]
    overhead_pair = f"{OVERHEAD['teacher']} -> {OVERHEAD['student']}, batch {OVERHEAD['batch']}"
    for name, title, sides in (("sides", "Equal numerics, fp32", plain_sides),
                               ("overhead", f"Per-step overhead: {overhead_pair}, fp32", plain_sides),
                               ("fast_path", f"Fast path: bf16-mixed, channels_last, {compiled}device-resident "
                                             "data, cached teacher (KD)", ["lightning", "loop"]),
                               ("graphs", "CUDA graphs: the fast path with compile=graphs (torch.compile "
                                          "reduce-overhead; uncompiled in a dry run)", ["lightning", "loop"])):
        rows = side_rows(sections.get(name, {}), sides)
        if rows:
            letters = "/".join(SIDE_LETTERS[s] for s in sides)
            lines += ["", f"## {title}", "", markdown_table(rows, sides, per_step=name == "overhead"),
                      "", f"Peak MB: GPU memory allocated in the timed steps {letters}."
                      + (" ms/step: median wall time of a step; CPU ms/step: the process's CPU time per step (the "
                         "host's work; on a GPU the step's kernels run beside it)." if name == "overhead" else "")]
    epoch = sections.get("epoch", {}).get("run", {})
    if "epochs" in epoch:
        lines += ["", "## Recipe epochs", "", f"`{epoch['command']}` ({epoch['train_images']:,} training images)", "",
                  "| epoch | train s | validation s | epoch s |", "|---|---|---|---|"]
        lines += [f"| {i + 1} | {e['train_s']:.1f} | {e['validation_s']:.1f} | {e['epoch_s']:.1f} |"
                  for i, e in enumerate(epoch["epochs"])]
        dynamo = epoch["dynamo"]
        lines += ["", f"240 epochs (epoch 1, then the last epoch's time for each of the other 239): "
                      f"{epoch['recipe_240_epochs_min']:.1f} min; steady training "
                      f"{epoch['steady_train_images_per_s']:,.0f} images/s; compiled graphs {dynamo['graphs']}, "
                      f"graph breaks {dynamo['graph_breaks']}, recompile-limit hits {dynamo['recompile_limit_hits']}."]
    methods = {k: v for k, v in sections.get("kd_methods", {}).items() if isinstance(v, dict)}
    if methods:
        lines += ["", f"## Every kd= method, one main-phase step (bf16-mixed, {compiled.rstrip(', ')})", "",
                  "| method | loss | finite | ms/step | graphs | graph breaks | peak MB |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {name} | {figure(r.get('loss'), '{:.4g}')} | {r.get('finite', '-')} | "
                  f"{figure(r.get('step_ms'))} | {r.get('graphs', '-')} | {r.get('graph_breaks', '-')} | "
                  f"{figure(r.get('peak_memory_mb'), '{:.0f}')} |" for name, r in methods.items() if "loss" in r]
    ddp = sections.get("ddp", {}).get("run", {})
    if "epochs" in ddp:
        lines += ["", "## trainer=ddp, one device", "", f"`{ddp['command']}`: {ddp['epochs']} epoch, strategy "
                  f"{ddp['strategy']}, test top-1 {figure(ddp['last_test_top1'], '{:.3f}')}, {ddp['run_s']:.0f} s."]
    trouble = problems(data)
    if trouble:
        lines += ["", "## Errors and skipped runs", "", *trouble]
    return "\n".join(lines) + "\n"
