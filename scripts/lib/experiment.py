"""The large-batch grid behind scripts/experiment (run it through that script: it builds first).

Every run is one real job: a lars-server process with a generated job file and its lars-worker
processes on free loopback ports. A run's result is one JSON line appended to the results file
when the server has exited; a grid that is started again skips every run whose key is already
there, so it can span several sittings. A run that was interrupted leaves no line and is redone.

Per cell (model, global batch, optimizer) the grid first sweeps the peak rate with seed 1, then
runs the remaining seeds at the rate with the best final test accuracy of the sweep.
"""

import argparse
import gzip
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timezone

# Per model: the batch sizes of the grid, the epoch budget and the warm-up (epochs).
# The sweep: how many peak rates per cell and the factor between neighbours (the CNN costs about
# ten times as much per epoch, so it gets fewer, wider-spaced rates).
MODELS = {
    "mlp": {"batches": [256, 2048, 8192, 16384], "epochs": 20, "warmup": 2.0, "sweep": 5, "factor": 2.0},
    "cnn": {"batches": [256, 8192], "epochs": 8, "warmup": 1.0, "sweep": 3, "factor": 4.0},
}
# `lars` keeps the biases out of the adapt mask (DESIGN.md's default, `rank2`: they take the peak
# rate itself); `lars-all` adapts every tensor (the paper's Algorithm 1, the recipes' choice since
# docs/results.md "The adapt mask").
OPTIMIZERS = ["sgd", "lars", "lars-all"]
DATA_DIR = "/usr/share/datasets/fashion-mnist"
# Common to both optimizers (as in configs/fashion-mnist-mlp-*.json).
MOMENTUM, WEIGHT_DECAY, ETA, POWER = 0.9, 5e-4, 0.001, 2.0
# A run whose final test accuracy is at or below this has collapsed to chance (10 classes)
# without the server calling it diverged: it cannot be a cell's best.
CHANCE = 0.11


def sweep(optimizer, batch, count, factor):
    """The peak rates tried for a cell, highest first, neighbours `factor` apart.

    SGD: the linear-scaling rate 0.1 x B/256 (Goyal et al.) and rates below it: that rule is what
    a practitioner starts from, and higher rates only diverge sooner.
    LARS: centred on the power of two nearest 16 x sqrt(B/8192) (16 is the recipe's peak at batch
    8192; LARS rates grow more slowly than B), half of the rates below it and half above.
    """
    if optimizer == "sgd":
        base = 0.1 * batch / 256
        return [round(base / factor**k, 8) for k in range(count)]
    centre = 2 ** round(math.log2(16 * math.sqrt(batch / 8192)))
    low = -(count // 2)
    return [round(centre * factor ** (low + k), 8) for k in reversed(range(count))]


def run_key(model, batch, optimizer, rate, seed, epochs, warmup):
    return f"{model}-b{batch}-{optimizer}-lr{rate:g}-s{seed}-e{epochs:g}-w{warmup:g}"


def job_config(key, model, batch, optimizer, rate, seed, epochs, warmup, workers, data_dir):
    if optimizer != "sgd":
        opt = {"name": "lars", "eta": ETA, "weight_decay": WEIGHT_DECAY, "momentum": MOMENTUM,
               "adapt": "all" if optimizer == "lars-all" else "rank2", "denominator": "sum_of_norms", "momentum_placement": "paper",
               "nesterov": False, "clip": False, "eps": 0}
    else:
        opt = {"name": "sgd", "weight_decay": WEIGHT_DECAY, "momentum": MOMENTUM,
               "momentum_placement": "paper", "nesterov": False}
    return {
        "name": key, "model": model,
        "dataset": {"name": "fashion-mnist", "dir": data_dir},
        "global_batch": batch, "workers": workers, "epochs": epochs, "seed": seed,
        "optimizer": opt,
        "schedule": {"name": "polynomial", "peak_rate": rate, "warmup_epochs": warmup,
                     "power": POWER, "end_rate": 0},
        "step_deadline_s": 120, "checkpoint_every": 0,
    }


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_results(path):
    results = {}
    lines = []
    if os.path.exists(path):
        with open(path) as f:
            lines = f.read().split("\n")
        for n, line in enumerate(lines, 1):
            line = line.strip()
            if not line:
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                if n >= len(lines) - 1:
                    print(f"scripts/experiment: {path}:{n}: ignoring a cut last line (that run is redone)", file=sys.stderr)
                    continue
                sys.exit(f"scripts/experiment: {path}:{n}: not a JSON line ({e}); fix or remove it")
            results[r["key"]] = r
    return results


def parse_run_log(lines):
    """(step records, eval records) of a server run log (JSON lines; a line cut by a kill is skipped)."""
    steps, evals = [], []
    for line in lines:
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        if r.get("type") == "step":
            steps.append(r)
        elif r.get("type") == "eval":
            evals.append(r)
    return steps, evals


def read_run_log(path):
    with open(path) as f:
        return parse_run_log(f)


class Runner:
    def __init__(self, args):
        self.args = args
        self.children = []

    def stop_children(self):
        for p in self.children:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.time() + 10
        for p in self.children:
            try:
                p.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.children = []

    def run(self, key, model, batch, optimizer, rate, seed):
        a = self.args
        epochs, warmup = a.epochs_for[model], a.warmup_for[model]
        run_dir = os.path.join(a.runs_dir, key)
        if os.path.exists(run_dir):
            shutil.rmtree(run_dir)  # a run that was interrupted: start it again from scratch
        os.makedirs(run_dir)
        config = job_config(key, model, batch, optimizer, rate, seed, epochs, warmup, a.workers, a.data_dir)
        with open(os.path.join(run_dir, "job.json"), "w") as f:
            json.dump(config, f, indent=2)
        port, http_port = free_port(), free_port()
        server_log = open(os.path.join(run_dir, "server.log"), "w")
        start = time.time()
        server = subprocess.Popen(
            [os.path.join(a.bin, "lars-server"), "--config", os.path.join(run_dir, "job.json"),
             "--port", str(port), "--http-port", str(http_port), "--checkpoint-dir", run_dir,
             "--checkpoint-every", "0"],
            stdout=server_log, stderr=subprocess.STDOUT)
        self.children = [server]
        if not self.wait_healthy(server, http_port):
            self.stop_children()
            tail = open(os.path.join(run_dir, "server.log")).read().strip().splitlines()[-3:]
            raise RuntimeError(f"lars-server did not start (exit {server.returncode}): {' | '.join(tail)}")
        workers = []
        for rank in range(a.workers):
            log = open(os.path.join(run_dir, f"worker-{rank}.log"), "w")
            workers.append(subprocess.Popen(
                [os.path.join(a.bin, "lars-worker"), "--server", f"127.0.0.1:{port}",
                 "--name", f"grid-{rank}", "--rank", str(rank), "--threads", "1", "--progress-every", "0"],
                stdout=log, stderr=subprocess.STDOUT))
        self.children += workers
        run_log = os.path.join(run_dir, "run.jsonl")
        last_print = last_growth = time.time()
        last_size = -1
        while server.poll() is None:
            time.sleep(0.5)
            now = time.time()
            if a.progress and now - last_print >= a.progress:
                last_print = now
                self.progress(key, run_log, start)
            # A worker that died, or a job that stopped moving, would keep the server waiting.
            dead = [(rank, w.returncode) for rank, w in enumerate(workers) if w.poll() not in (None, 0)]
            if dead:
                self.stop_children()
                raise RuntimeError(f"lars-worker rank {dead[0][0]} exited {dead[0][1]} (see {run_dir}/worker-{dead[0][0]}.log)")
            size = os.path.getsize(run_log) if os.path.exists(run_log) else 0
            if size != last_size:
                last_size, last_growth = size, now
            elif now - last_growth > a.stall_timeout:
                self.stop_children()
                raise RuntimeError(f"no step or evaluation for {a.stall_timeout:g} s (see {run_dir})")
        server_exit = server.returncode
        worker_exits = []
        for w in workers:
            try:
                worker_exits.append(w.wait(30))
            except subprocess.TimeoutExpired:
                w.kill()
                worker_exits.append(w.wait())
        self.children = []
        wall = time.time() - start
        if server_exit not in (0, 3):
            tail = open(os.path.join(run_dir, "server.log")).read().strip().splitlines()[-3:]
            raise RuntimeError(f"lars-server exited {server_exit}: {' | '.join(tail)}")
        if not os.path.exists(run_log):
            raise RuntimeError(f"lars-server exited {server_exit} without a run log in {run_dir}")
        steps, evals = read_run_log(run_log)
        accs = [e["accuracy"] for e in evals]
        best = max(range(len(accs)), key=lambda i: accs[i]) if accs else None
        result = {
            "key": key, "model": model, "global_batch": batch, "optimizer": optimizer,
            "peak_rate": rate, "seed": seed, "epochs": epochs, "warmup_epochs": warmup,
            "workers": a.workers,
            "diverged": server_exit == 3,
            "final_accuracy": accs[-1] if accs else None,
            "best_accuracy": accs[best] if accs else None,
            "best_epoch": evals[best]["epoch"] if accs else None,
            "final_train_loss": steps[-1]["loss"] if steps else None,
            "steps": len(steps),
            "skipped_steps": sum(1 for s in steps if s.get("skipped")),
            "wall_s": round(wall, 1),
            "evals": [[round(e["epoch"], 4), e["accuracy"]] for e in evals],
            "server_exit": server_exit, "worker_exits": worker_exits,
            "finished": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "run_dir": run_dir, "config": config,
        }
        if a.keep_logs and batch in a.keep_logs:
            os.makedirs(a.logs_dir, exist_ok=True)
            with open(run_log, "rb") as src, gzip.open(os.path.join(a.logs_dir, f"{key}.jsonl.gz"), "wb") as dst:
                shutil.copyfileobj(src, dst)
        if not a.keep_checkpoints:
            for name in os.listdir(run_dir):
                if name.endswith(".safetensors"):
                    os.remove(os.path.join(run_dir, name))
            shutil.rmtree(os.path.join(run_dir, "momentum"), ignore_errors=True)
        return result

    def wait_healthy(self, server, http_port):
        for _ in range(300):
            if server.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=1):
                    return True
            except OSError:
                time.sleep(0.1)
        return False

    def progress(self, key, run_log, start):
        try:
            steps, evals = read_run_log(run_log)
        except FileNotFoundError:
            return
        if not steps:
            return
        s = steps[-1]
        acc = f"test acc {evals[-1]['accuracy']:.4f}" if evals else "test acc -"
        print(f"    {key}: epoch {s['epoch']:.2f} step {s['step']} loss {s['loss']:.4f} "
              f"rate {s['rate']:.4g} {acc} ({time.time() - start:.0f} s)", flush=True)


def best_rate(rows):
    """The sweep's winner: highest final accuracy among runs that neither diverged nor collapsed
    to chance (lower rate on ties); None when every run did one or the other."""
    ok = [r for r in rows if not r["diverged"] and r["final_accuracy"] is not None and r["final_accuracy"] > CHANCE]
    if not ok:
        return None
    return max(ok, key=lambda r: (r["final_accuracy"], -r["peak_rate"]))["peak_rate"]


# How many rates a sweep may add beyond its edge when its best rate sits on that edge.
MAX_EXTENSIONS = 3


def extension(optimizer, rates, best, factor):
    """The next rate to try when the sweep's best is on its edge, else None: below the lowest
    (or below everything when all diverged), and for LARS also above the highest. SGD never goes
    above its linear-scaling rate."""
    low, high = min(rates), max(rates)
    if best is None or best == low:
        return round(low / factor, 8)
    if optimizer != "sgd" and best == high:
        return round(high * factor, 8)
    return None


def plan(args, results):
    """(key, model, batch, optimizer, rate, seed) of every run the selection asks for, in order.
    A sweep whose best rate lies on its edge grows past that edge (up to MAX_EXTENSIONS rates,
    not for explicit --rates); seed runs of a cell are listed once its sweep is complete."""
    runs = []
    for model in args.models:
        e, w = args.epochs_for[model], args.warmup_for[model]
        factor = MODELS[model]["factor"]
        for batch in args.batches_for[model]:
            for opt in args.optimizers:
                count = args.sweep or MODELS[model]["sweep"]
                explicit = bool(args.rates.get(opt))
                rates = list(args.rates[opt]) if explicit else sweep(opt, batch, count, factor)
                while True:
                    sweep_keys = [run_key(model, batch, opt, r, 1, e, w) for r in rates]
                    if explicit or not all(k in results for k in sweep_keys) or len(rates) >= count + MAX_EXTENSIONS:
                        break
                    more = extension(opt, rates, best_rate([results[k] for k in sweep_keys]), factor)
                    if more is None:
                        break
                    rates.append(more)
                runs += [(k, model, batch, opt, r, 1) for k, r in zip(sweep_keys, rates)]
                if all(k in results for k in sweep_keys):
                    rate = best_rate([results[k] for k in sweep_keys])
                    if rate is not None:
                        runs += [(run_key(model, batch, opt, rate, s, e, w), model, batch, opt, rate, s)
                                 for s in range(2, args.seeds + 1)]
                else:
                    runs.append((None, model, batch, opt, None, None))  # seeds follow the sweep
    return runs


def mark(r):
    return "†" if r["diverged"] else ("‡" if (r["final_accuracy"] or 0) <= CHANCE else "")


def report(args, results):
    """Markdown table of what has run: per cell the rates tried, the best rate (seed 1's final
    test accuracy), every seed's final accuracy there with mean and spread, and the band of rates
    within 1 point of the best."""
    cells = {}
    for r in results.values():
        cells.setdefault((r["model"], r["global_batch"], r["optimizer"], r["epochs"], r["warmup_epochs"]), []).append(r)
    print("| model | batch | optimizer | epochs (warm-up) | peak rates tried | best rate | final accuracy there, per seed | mean | spread | rates within 1 point of the best |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    total_wall = 0.0
    for cell in sorted(cells, key=lambda c: (c[0] != "mlp", c[0], c[1], c[2] != "sgd", c[3], c[4])):
        model, batch, opt, epochs, warmup = cell
        rows = cells[cell]
        total_wall += sum(r["wall_s"] for r in rows)
        sweep_rows = sorted((r for r in rows if r["seed"] == 1), key=lambda r: -r["peak_rate"])
        tried = ", ".join(f"{r['peak_rate']:g}{mark(r)}" for r in sweep_rows)
        head = f"| {model} | {batch} | {opt} | {epochs:g} ({warmup:g}) | {tried} |"
        rate = best_rate(sweep_rows)
        if rate is None:
            print(f"{head} none trained | | | | |")
            continue
        edge = ""
        if rate == min(r["peak_rate"] for r in sweep_rows) or (opt == "lars" and rate == max(r["peak_rate"] for r in sweep_rows)):
            edge = " (edge)"
        elif opt == "sgd" and rate == max(r["peak_rate"] for r in sweep_rows):
            edge = " (the rule's rate)"
        at_best = sorted((r for r in rows if r["peak_rate"] == rate), key=lambda r: r["seed"])
        ok = [r for r in at_best if not r["diverged"] and r["final_accuracy"] is not None]
        accs = [r["final_accuracy"] for r in ok]
        mean = sum(accs) / len(accs)
        spread = max(accs) - min(accs)
        seeds = ", ".join(f"{r['final_accuracy']:.4f}" if r in ok else f"seed {r['seed']} diverged" for r in at_best)
        top = accs[0]  # seed 1 at the best rate
        band = [r["peak_rate"] for r in sweep_rows
                if not r["diverged"] and r["final_accuracy"] is not None and r["final_accuracy"] >= top - 0.01]
        contiguous = all(not (min(band) <= r["peak_rate"] <= max(band)) or r["peak_rate"] in band for r in sweep_rows)
        band_text = (f"{min(band):g}–{max(band):g}" if len(band) > 1 else f"{band[0]:g} only") + f" ({len(band)} of {len(sweep_rows)})"
        if not contiguous:
            band_text = ", ".join(f"{b:g}" for b in sorted(band)) + f" ({len(band)} of {len(sweep_rows)})"
        print(f"{head} {rate:g}{edge} | {seeds} | {mean:.4f} | {spread:.4f} | {band_text} |")
    print(f"\n{len(results)} runs, {total_wall / 3600:.2f} h of run wall time († diverged: the server ended the job; "
          f"‡ collapsed: final accuracy at chance)")


def parse_args():
    p = argparse.ArgumentParser(
        prog="scripts/experiment",
        description="Runs the large-batch grid (SGD vs LARS) through the real lars-server and lars-worker.")
    p.add_argument("--model", action="append", choices=sorted(MODELS), help="models to run (default: all); repeatable")
    p.add_argument("--batch", action="append", type=int, help="global batch sizes (default: the model's grid); repeatable")
    p.add_argument("--optimizer", action="append", choices=OPTIMIZERS, help="optimizers (default: all three); repeatable")
    p.add_argument("--epochs", action="append", default=[], metavar="MODEL=N",
                   help="epoch budget of a model (default mlp=20, cnn=8); repeatable")
    p.add_argument("--warmup", action="append", default=[], metavar="MODEL=E",
                   help="warm-up epochs of a model (default mlp=2, cnn=1); repeatable")
    p.add_argument("--sweep", type=int, default=0,
                   help="peak rates per cell (default: mlp 5, factor 2 apart; cnn 3, factor 4 apart)")
    p.add_argument("--rates", action="append", default=[], metavar="OPT=R1,R2,...",
                   help="explicit peak rates for an optimizer instead of the sweep rule")
    p.add_argument("--seeds", type=int, default=2, help="seeds at each cell's best rate (default 2)")
    p.add_argument("--workers", type=int, default=2, help="lars-worker processes per run (default 2)")
    p.add_argument("--results", default="docs/grid/results.jsonl", help="results file (JSON lines)")
    p.add_argument("--runs-dir", default="runs/experiment", help="per-run directories (job file, logs, run log)")
    p.add_argument("--logs-dir", default="docs/grid/logs", help="where gzipped run logs are kept (see --keep-logs)")
    p.add_argument("--keep-logs", action="append", type=int, default=None, metavar="BATCH",
                   help="gzip the run logs of this batch size into --logs-dir (default 8192); repeatable")
    p.add_argument("--keep-checkpoints", action="store_true", help="keep each run's final checkpoint")
    p.add_argument("--data-dir", default=DATA_DIR, help=f"Fashion-MNIST IDX files (default {DATA_DIR})")
    p.add_argument("--progress", type=float, default=15, help="seconds between progress lines (0: none)")
    p.add_argument("--stall-timeout", type=float, default=300,
                   help="seconds without a new step or evaluation before a run is stopped as failed (default 300)")
    p.add_argument("--bin", default=".build/release", help="directory of lars-server and lars-worker")
    p.add_argument("--plan", action="store_true", help="print the runs still to do and stop")
    p.add_argument("--report", action="store_true", help="print the tables from the results file and stop")
    args = p.parse_args()
    args.models = args.model or list(MODELS)
    args.optimizers = args.optimizer or OPTIMIZERS
    args.batches_for = {m: (args.batch or MODELS[m]["batches"]) for m in args.models}
    args.epochs_for = {m: MODELS[m]["epochs"] for m in MODELS}
    args.warmup_for = {m: MODELS[m]["warmup"] for m in MODELS}
    for flag, table, kind in (("--epochs", args.epochs_for, int), ("--warmup", args.warmup_for, float)):
        for item in getattr(args, flag[2:]):
            model, _, value = item.partition("=")
            if model not in MODELS or not value:
                p.error(f"{flag} {item}: expected MODEL=VALUE with MODEL one of {', '.join(MODELS)}")
            try:
                table[model] = kind(value)
            except ValueError:
                p.error(f"{flag} {item}: {value!r} is not a number")
    rates = {}
    for item in args.rates:
        opt, _, values = item.partition("=")
        if opt not in OPTIMIZERS:
            p.error(f"--rates {item}: expected OPT=R1,R2 with OPT one of {', '.join(OPTIMIZERS)}")
        try:
            rates[opt] = sorted((float(v) for v in values.split(",")), reverse=True)
        except ValueError:
            p.error(f"--rates {item}: the rates must be numbers")
        if not rates[opt] or min(rates[opt]) <= 0:
            p.error(f"--rates {item}: the rates must be > 0")
    args.rates = rates
    if args.sweep < 0 or args.seeds < 1 or args.workers < 1:
        p.error("--sweep must be >= 0 (0: the model's default), --seeds and --workers >= 1")
    args.keep_logs = args.keep_logs if args.keep_logs is not None else [8192]
    return args


def main():
    args = parse_args()
    results = read_results(args.results)
    if args.report:
        report(args, results)
        return
    runner = Runner(args)

    def interrupted(signum, frame):
        print("\nscripts/experiment: stopping the current run (its result is not kept; a rerun redoes it)", flush=True)
        runner.stop_children()
        sys.exit(130)

    signal.signal(signal.SIGINT, interrupted)
    signal.signal(signal.SIGTERM, interrupted)
    os.makedirs(os.path.dirname(args.results) or ".", exist_ok=True)
    grid_start, done_here, failed = time.time(), 0, set()
    while True:
        todo = [r for r in plan(args, results) if r[0] is None or r[0] not in results]
        runnable = [r for r in todo if r[0] is not None and r[0] not in failed]
        if args.plan:
            for key, *_ in runnable:
                print(key)
            waiting = len(todo) - len(runnable)
            print(f"{len(runnable)} runs to do" + (f", then the seed runs of {waiting} cells" if waiting else ""))
            return
        if not runnable:
            break
        key, model, batch, opt, rate, seed = runnable[0]
        print(f"scripts/experiment: [{done_here + 1}, {len(runnable)} left] {key} "
              f"({datetime.now(timezone.utc).strftime('%H:%M:%S')} UTC)", flush=True)
        try:
            result = runner.run(key, model, batch, opt, rate, seed)
        except RuntimeError as e:
            failed.add(key)
            print(f"scripts/experiment: {key} failed: {e}", file=sys.stderr, flush=True)
            if len(failed) >= 3:
                sys.exit("scripts/experiment: three runs failed; stopping (see the run directories)")
            continue
        with open(args.results, "a+") as f:
            # After a cut last line, start on a line of its own.
            f.seek(0, os.SEEK_END)
            if f.tell() > 0:
                f.seek(f.tell() - 1)
                if f.read(1) != "\n":
                    f.write("\n")
            f.write(json.dumps(result, separators=(",", ":")) + "\n")
        results[key] = result
        done_here += 1
        outcome = "diverged" if result["diverged"] else f"final {result['final_accuracy']:.4f}"
        best = f", best {result['best_accuracy']:.4f}" if result["best_accuracy"] is not None else ""
        print(f"scripts/experiment:   {outcome}{best}, {result['steps']} steps, {result['wall_s']:.0f} s", flush=True)
    minutes = (time.time() - grid_start) / 60
    if failed:
        print(f"scripts/experiment: {len(failed)} runs failed ({', '.join(sorted(failed))}); "
              f"their cells are incomplete; run again to retry them", file=sys.stderr)
        report(args, results)
        sys.exit(1)
    print(f"scripts/experiment: grid complete for this selection ({done_here} runs in "
          f"{minutes:.1f} min this sitting); results in {args.results}\n")
    report(args, results)


if __name__ == "__main__":
    main()
