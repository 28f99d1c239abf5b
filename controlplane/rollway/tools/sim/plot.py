"""A simulated deploy as a picture: sessions and capacity per version over time."""

from __future__ import annotations

from rollway.tools.sim.model import SimResult


def plot(result: SimResult, path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times = sorted(result.series)
    versions = sorted({v for point in result.series.values() for v in point["sessions"]} |
                      {v for point in result.series.values() for v in point["capacity"]})
    fig, ax = plt.subplots(figsize=(8, 4.2), dpi=110)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, v in enumerate(versions):
        color = colors[k % len(colors)]
        ax.plot(times, [result.series[t]["sessions"].get(v, 0) for t in times], color=color, lw=2,
                label=f"sessions on {v}")
        ax.plot(times, [result.series[t]["capacity"].get(v, 0) for t in times], color=color, lw=1, ls="--",
                label=f"capacity share of {v}")
    ax.set_xlabel("simulated seconds")
    ax.set_ylabel("share")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.legend(loc="center right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
