"""``hrsbench``: run a benchmark config, list plugins. Errors a user can fix print one line."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hrsbench import __version__
from hrsbench.des import BASE, ETA, BehaviourRange
from hrsbench.errors import HrsbenchError

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console()
err = Console(stderr=True)


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn HrsbenchError into one line on stderr and exit 1; Ctrl-C into exit 130."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except HrsbenchError as e:
            err.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err.print("interrupted: finished results are kept; rerun the same command to resume")
            raise typer.Exit(130) from None

    return wrapper


def _version(value: bool) -> None:
    if value:
        console.print(f"hrsbench {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show version.")
    ] = False,
) -> None:
    """Adversarial-robustness benchmark for stochastic defenses (HRS, SAP, dropout, noise)."""


@app.command()
@friendly
def run(
    config: Annotated[
        str | None, typer.Argument(help="TOML config file or preset name; default: quick")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder; default runs/NAME")] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Data folder; default $HRSBENCH_DATA or ~/.cache")
    ] = None,
    cache_dir: Annotated[
        Path | None, typer.Option(help="Model cache; default $HRSBENCH_CACHE or ~/.cache")
    ] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda")] = "cpu",
    leaderboard: Annotated[
        Path | None, typer.Option(help="Write the leaderboard here; default OUT/leaderboard.md")
    ] = None,
) -> None:
    """Train (or load) every defense in CONFIG, run its attacks, append results.jsonl, and
    write the leaderboard and figures of all its results."""
    import torch

    from hrsbench.cells import expand
    from hrsbench.config import load_config
    from hrsbench.plugins import registry
    from hrsbench.runner import run as run_cells

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise HrsbenchError("--device cuda asked for but no CUDA device is available; use cpu")
    cfg, source = load_config(config)
    expand(cfg, registry())  # plugin names and parameters fail here, before any output
    out = out or Path("runs") / Path(config or "quick").stem
    console.print(f"[bold]hrsbench {__version__}[/bold] · {source} · config {cfg.hash} → {out}")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        tasks: dict[str, int] = {}

        def report(task: str, label: str, done: int, total: int) -> None:
            if task not in tasks:
                tasks[task] = bar.add_task(label, total=total)
            bar.update(tasks[task], description=label, completed=done, total=total)

        lines = run_cells(cfg, out, data_dir=data_dir, cache_dir=cache_dir, device=device,
                          progress=report)
    console.print(results_table(lines))
    console.print(f"results: {out / 'results.jsonl'}")
    from hrsbench.leaderboard import write_run_reports

    path = write_run_reports(out, reference=cfg.reference, leaderboard=leaderboard)
    console.print(f"leaderboard: {path} (figures in {out / 'plots'})")


def results_table(lines: list[dict[str, Any]]) -> Table:
    from hrsbench.sanity import annotate

    table = Table(title="results")
    for col in ("defense", "params", "attack", "ε", "setting", "clean acc", "ASR", "defense rate",
                "sanity"):
        table.add_column(col)
    for r in annotate(lines):
        asr = r["attack_success_rate"]
        params = " ".join(f"{k}={v}" for k, v in r["params"].items())
        table.add_row(
            r["defense"], params, r["attack"],
            f"{r['attack_strength']:.4g}" if r["attack"] != "none" else "",
            r["setting"] if r["attack"] != "none" else "",
            f"{100 * r['clean_accuracy']:.2f}%",
            "" if asr is None else f"{100 * asr:.1f}% ± {100 * r['attack_success_rate_std']:.1f}",
            "" if asr is None else f"{100 * (1 - asr):.1f}%",
            r["sanity"],
        )
    return table


@app.command()
@friendly
def plugins() -> None:
    """List every defense, attack, dataset and threat with its package, version and parameters
    (required ones marked), and the attack settings."""
    import warnings

    from rich.markup import escape

    from hrsbench.catalog import SETTING_HELP, rows
    from hrsbench.plugins import PluginWarning, load_registry

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginWarning)  # listed below the table instead
        reg = load_registry()
    table = Table(title="hrsbench plugins")
    for col in ("kind", "name", "package", "version", "parameters", "notes"):
        table.add_column(col, overflow="fold")
    for r in rows(reg):
        table.add_row(*(escape(v) for v in (r.kind, r.name, r.package, r.version, r.parameters,
                                            r.notes)))
    console.print(table)
    settings = Table(title=escape("attack settings ([[attacks]] settings = [...])"))
    for col in ("setting", "the attack crafts against"):
        settings.add_column(col)
    for name, text in SETTING_HELP.items():
        settings.add_row(name, escape(text))
    console.print(settings)
    for line in reg.warnings:
        err.print(f"warning: {escape(line)}", highlight=False, soft_wrap=True)


DtRange = Annotated[
    tuple[float, float] | None,
    typer.Option(help="LO HI: mean DES and fits only over points with LO ≤ Δt ≤ HI (fractions)"),
]
RateRange = Annotated[
    tuple[float, float] | None,
    typer.Option(help="LO HI: only points whose defense rate is in [LO, HI] (fractions)"),
]


def _behaviour(
    dt_range: tuple[float, float] | None, rate_range: tuple[float, float] | None
) -> BehaviourRange:
    return BehaviourRange(delta_t=dt_range or (None, None),
                          defense_rate=rate_range or (None, None))


@app.command()
@friendly
def leaderboard(
    results: Annotated[list[Path], typer.Argument(help="results.jsonl files, from any runs")],
    out: Annotated[Path, typer.Option(help="Markdown file to write")],
    plots: Annotated[Path | None, typer.Option(help="Also write the figures here")] = None,
    base: Annotated[str, typer.Option(help="Defense that Δt and Δd are measured from")] = BASE,
    eta: Annotated[float, typer.Option(help="η in DES = Δd / (Δt + η)")] = ETA,
    dt_range: DtRange = None,
    rate_range: RateRange = None,
    reference: Annotated[
        Path | None, typer.Option(help="A paper's numbers to print beside ours (TOML)")
    ] = None,
) -> None:
    """Merge result files into one markdown leaderboard ranked by mean DES (docs/des.md)."""
    from hrsbench.leaderboard import write_leaderboard

    path, figures = write_leaderboard(results, out, plots=plots, base=base, eta=eta,
                                      behaviour=_behaviour(dt_range, rate_range),
                                      reference=reference)
    console.print(f"leaderboard: {path}" + (f" ({len(figures)} figure files in {plots})"
                                             if plots else ""))


@app.command()
@friendly
def plot(
    results: Annotated[list[Path], typer.Argument(help="results.jsonl files, from any runs")],
    out: Annotated[Path, typer.Option(help="Folder for the PNG and SVG figures")],
    base: Annotated[str, typer.Option(help="Defense that Δt and Δd are measured from")] = BASE,
    eta: Annotated[float, typer.Option(help="η in DES = Δd / (Δt + η)")] = ETA,
    dt_range: DtRange = None,
    rate_range: RateRange = None,
) -> None:
    """Draw ASR against ε (Figure 4), the DES scatter (Figures 2, 5) and gradient deviation
    against defense rate (Figure A4) from result files."""
    from hrsbench.leaderboard import build_report, merge_results
    from hrsbench.plots import write_plots

    report = build_report(merge_results(*results), base=base, eta=eta,
                          behaviour=_behaviour(dt_range, rate_range))
    files = write_plots(report, out)
    console.print(f"{len(files)} figure files in {out}")


def entry() -> None:  # pragma: no cover - console script shim for python -m
    app(prog_name="hrsbench")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(entry())
