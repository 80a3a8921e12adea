"""Which learning rate should the quickstart fine-tune its front's models with? (issue 19)

Fine-tunes the front models of one finished run (by default the quickstart's, `runs/quickstart`; made
with `nat quickstart` first when missing) with `nat export --finetune-epochs E --no-distill --lr LR`
for each learning rate, and measures every fine-tuned model on two splits:

- the search-validation split, which fine-tuning never trains on (it trains on the train split
  without those images): the figure to choose a learning rate by;
- the test split, which neither the search nor the choice sees: the figure to report.

    python bench/finetune_lr.py [--run runs/quickstart] [--lrs 0.003 0.01 0.03 0.05 0.1] [--epochs 3]
                                [--threads 1] [--out FILE]

Writes bench/results/finetune_lr.json: per learning rate, every model's MAdds, resolution,
search-val top-1 after fine-tuning and test top-1, and the means over the models. Row ``lr: null``:
the models as adapted (no fine-tuning). One export takes about 2.5 minutes on one core of this
project's machine (one torch thread).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from nat.data import TaskData  # noqa: E402
from nat.data.config import load_from_config, loader_from_config  # noqa: E402
from nat.export import load_model  # noqa: E402
from nat.search import SearchConfig, load_config  # noqa: E402
from nat.train.evaluation import evaluate_accuracy  # noqa: E402
from record import code_version, write_result  # noqa: E402


def nat(*args: str) -> None:
    """One `nat` command in a child process (its own logging and thread settings), failing loudly."""
    subprocess.run([sys.executable, "-m", "nat", *args], check=True, stdout=subprocess.DEVNULL)


def measure(config: SearchConfig, task: TaskData, models_dir: Path) -> list[dict]:
    """Search-val top-1 of every model folder in ``models_dir`` (test top-1 as `nat export` measured)."""
    index = json.loads((models_dir / "models.json").read_text())
    rows = []
    for entry in sorted(index, key=lambda m: m["madds"]):
        model = load_model(models_dir / entry["name"])
        r = int(model.info["subnet"]["r"])
        loader = loader_from_config(task, config.data, "val", resolution=r, seed=config.seed, train=False)
        rows.append(
            {
                "name": entry["name"],
                "madds": entry["madds"],
                "resolution": r,
                "val_top1": float(evaluate_accuracy(model, loader)["top1"]),
                "test_top1": float(entry["test_top1"]),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=ROOT / "runs" / "quickstart")
    parser.add_argument("--lrs", type=float, nargs="+", default=[0.003, 0.01, 0.03, 0.05, 0.1])
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "finetune_lr.json")
    args = parser.parse_args()
    commit = code_version()  # the code this process runs (read before the runs, not after)
    torch.set_num_threads(args.threads)
    if not (args.run / "state.json").is_file():
        print(f"{args.run} holds no finished run: running `nat quickstart --out {args.run}` first")
        nat("quickstart", "--out", str(args.run))
    config = load_config(args.run / "config.yaml")
    task = load_from_config(config.data, config.seed)  # the run's splits, loaded once for every rate
    settings: list[float | None] = [None, *args.lrs]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for lr in settings:
            out = Path(tmp) / f"lr{lr}"
            flags = ["--finetune-epochs", "0"] if lr is None else ["--finetune-epochs", str(args.epochs)]
            if lr is not None:
                flags += ["--lr", str(lr), "--no-distill"]
            nat("export", str(args.run), *flags, "--threads", str(args.threads), "--out", str(out))
            rows = measure(config, task, out)
            val = sum(r["val_top1"] for r in rows) / len(rows)
            test = sum(r["test_top1"] for r in rows) / len(rows)
            results.append({"lr": lr, "models": rows, "mean_val_top1": val, "mean_test_top1": test})
            label = "as adapted" if lr is None else f"lr {lr:g}"
            print(
                f"{label:>11}: search-val {100 * val:.2f}%  test {100 * test:.2f}%  (models: "
                + ", ".join(f"{100 * r['test_top1']:.1f}" for r in rows)
                + ")",
                flush=True,
            )
    result = {
        "what": "the front models of one run fine-tuned at each learning rate: search-val and test top-1",
        "run": str(args.run),
        "epochs": args.epochs,
        "distill": False,
        "threads": args.threads,
        "rows": results,
    }
    write_result(args.out, result, indent=2, threads=args.threads, commit=commit)


if __name__ == "__main__":
    main()
