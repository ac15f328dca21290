"""Draw the benchmark results as a PNG bar chart (needs matplotlib)."""

from __future__ import annotations

from typing import Any

COLORS = {"carrot": "#e8772e", "py-amqp": "#4c72b0", "kombu": "#55a868", "pika": "#8172b2"}


def write_chart(results: dict[str, Any], path: str) -> bool:
    """Write a grouped bar chart of msg/s per scenario; ``False`` without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        import sys

        print("matplotlib is not installed (pip install matplotlib): no chart", file=sys.stderr)
        return False
    from run import SCENARIOS

    throughput = results["throughput"]
    scenarios = [s for s in SCENARIOS if s in throughput]
    clients = list(throughput[scenarios[0]])
    width = 0.8 / len(clients)
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=100)
    for i, client in enumerate(clients):
        rates = [throughput[s][client]["rate"] / 1000 for s in scenarios]
        xs = [x + (i - (len(clients) - 1) / 2) * width for x in range(len(scenarios))]
        bars = ax.bar(xs, rates, width, label=client, color=COLORS.get(client))
        for bar, rate in zip(bars, rates, strict=True):
            ax.annotate(
                f"{rate:.0f}",
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=7,
            )
    ax.set_xticks(range(len(scenarios)))
    ax.set_xticklabels([SCENARIOS[s].replace(", ", ",\n", 1) for s in scenarios], fontsize=8)
    ax.set_ylabel("thousand messages / second (median)")
    machine = results.get("machine", {})
    ax.set_title(
        f"carrot vs py-amqp, kombu, pika: {results.get('n')} messages, "
        f"{results.get('rounds')} interleaved rounds, RabbitMQ {machine.get('broker')}, "
        f"{machine.get('cpus')} CPUs",
        fontsize=9,
    )
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True
