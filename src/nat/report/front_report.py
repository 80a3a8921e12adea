"""The run report: the trade-off front as a plot (PNG) and a short Markdown summary.

Plots are drawn on a `matplotlib.figure.Figure` with its own Agg canvas, not through pyplot: importing
or using nat never switches the user's matplotlib backend (e.g. a notebook's) nor registers figures
with pyplot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def plot_front(
    archive: list[dict[str, Any]],
    front: list[dict[str, Any]],
    path: Path,
    x_key: str = "madds",
    title: str = "NAT trade-off front",
) -> Path:
    """Archive (grey) and front (red, with test accuracy where known) in accuracy vs complexity."""
    fig = Figure(figsize=(6, 4), dpi=120)
    FigureCanvasAgg(fig)  # attaches itself as fig.canvas
    ax = fig.subplots()
    ax.scatter(
        [r[x_key] / 1e6 for r in archive],
        [100 * r["top1"] for r in archive],
        s=10,
        c="0.7",
        label="archive (search-val top-1)",
    )
    front = sorted(front, key=lambda r: r[x_key])
    ax.plot(
        [r[x_key] / 1e6 for r in front],
        [100 * r["top1"] for r in front],
        "o-",
        c="tab:red",
        label="front (search-val top-1)",
    )
    if all("test_top1" in r for r in front):
        ax.plot(
            [r[x_key] / 1e6 for r in front],
            [100 * r["test_top1"] for r in front],
            "s--",
            c="tab:blue",
            label="front models (test top-1)",
        )
    ax.set_xlabel(f"{x_key} (millions)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return path


def markdown_summary(title: str, facts: dict[str, Any], front: list[dict[str, Any]], plot_name: str) -> str:
    lines = [f"# {title}", ""]
    lines += [f"- **{k}**: {v}" for k, v in facts.items()]
    lines += [
        "",
        f"![front]({plot_name})",
        "",
        "| model | MAdds (M) | params (M) | resolution | search-val top-1 | test top-1 |",
        "|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(sorted(front, key=lambda r: r["madds"])):
        test = f"{100 * r['test_top1']:.2f}%" if r.get("test_top1") is not None else "-"
        params = f"{r['params'] / 1e6:.3f}" if r.get("params") is not None else "-"
        lines.append(
            f"| {r.get('name', i)} | {r['madds'] / 1e6:.2f} | {params} | "
            f"{r['subnet']['r']} | {100 * r['top1']:.2f}% | {test} |"
        )
    return "\n".join(lines) + "\n"
