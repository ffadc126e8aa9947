"""``hrsbench``: run a benchmark config, list plugins. Errors a user can fix print one line."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from hrsbench import __version__
from hrsbench.errors import HrsbenchError
from hrsbench.paths import default_cache_dir, default_data_dir
from hrsbench.report.behaviour import BASE, ETA, BehaviourRange

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Run a benchmark config, list plugins, write leaderboards. Errors a user "
                       "can fix print one line.")
console = Console()
err = Console(stderr=True)


#: Set by the global --debug option: show the traceback behind a one-line error.
DEBUG = {"on": False}
#: Exit status of an unexpected exception: a bug to report, not a mistake in the input.
EXIT_BUG = 70


def fail(message: str, cause: BaseException | None = None) -> None:
    """One line on stderr, printed literally (no rich markup: ``[[defenses]]`` stays as is)."""
    if DEBUG["on"] and cause is not None:
        import traceback

        traceback.print_exception(cause, file=sys.stderr)
    err.print(Text.assemble(("error: ", "red"), message), highlight=False, soft_wrap=True)


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """One error path for every command: a HrsbenchError or a foreseeable OS error (permissions,
    a file where a folder should be, a full disk) is one line and exit 1; Ctrl-C is exit 130;
    anything else is a bug, shown with its traceback so it can be reported."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except HrsbenchError as e:
            fail(str(e), e.__cause__ or e.__context__)
            raise typer.Exit(1) from None
        except OSError as e:
            from hrsbench.paths import os_error_line

            fail(os_error_line(e), e)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err.print("interrupted: finished results are kept; rerun the same command to resume")
            raise typer.Exit(130) from None
        except Exception as e:
            import traceback

            traceback.print_exception(e, file=sys.stderr)
            fail(f"unexpected {type(e).__name__}: this is a bug in hrsbench or a plugin, not in "
                 "your input; please report it with the traceback above")
            raise typer.Exit(EXIT_BUG) from None

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
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the traceback behind a one-line error.")
    ] = False,
) -> None:
    """Adversarial-robustness benchmark for stochastic defenses (HRS, SAP, dropout, noise)."""
    DEBUG["on"] = debug
    import warnings

    warnings.showwarning = show_warning


def show_warning(message: Warning | str, category: type[Warning], *args: Any, **kw: Any) -> None:
    """A warning as one plain line on stderr (Python's own format adds a source line)."""
    err.print(Text.assemble(("warning: ", "yellow"), str(message)), highlight=False,
              soft_wrap=True)


_DATA_HELP = (f"Data folder; default {default_data_dir()} ($HRSBENCH_DATA when set, else "
              "$XDG_CACHE_HOME/hrsbench/data or ~/.cache/hrsbench/data)")
_CACHE_HELP = (f"Model cache; default {default_cache_dir()} ($HRSBENCH_CACHE when set, else "
               "$XDG_CACHE_HOME/hrsbench/models or ~/.cache/hrsbench/models)")


@app.command()
@friendly
def run(
    config: Annotated[
        str | None, typer.Argument(help="TOML config file or preset name (hrsbench presets); "
                                        "default: quick")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder; default runs/NAME")] = None,
    data_dir: Annotated[Path | None, typer.Option(help=_DATA_HELP)] = None,
    cache_dir: Annotated[Path | None, typer.Option(help=_CACHE_HELP)] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N")] = "cpu",
    leaderboard: Annotated[
        Path | None, typer.Option(help="Write the leaderboard here; default OUT/leaderboard.md")
    ] = None,
    wait: Annotated[
        bool, typer.Option(help="If another run holds OUT, wait for it instead of refusing")
    ] = False,
    executor: Annotated[
        str, typer.Option(help="local (in this process) or ray (docs/distributed.md)")
    ] = "local",
    ray_address: Annotated[
        str | None, typer.Option(help="Ray cluster to join ('auto': this machine's); "
                                      "default: start a local Ray instance")
    ] = None,
    threads_per_task: Annotated[
        int | None, typer.Option(help="CPU threads (and Ray CPUs) per task; default: torch's "
                                      "own count locally, 1 on Ray")
    ] = None,
    precision: Annotated[
        str | None, typer.Option(help="Training arithmetic: fp32, bf16 (autocast) or auto (bf16 "
                                      "where the device computes it natively); default: the "
                                      "config's (fp32)")
    ] = None,
    gpus_per_task: Annotated[
        float | None, typer.Option(help="With --executor ray and --device cuda: the share of "
                                        "a GPU each task asks Ray for (0.25: four tasks per "
                                        "GPU); default 1")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option(help="Print the models and cells to run with estimated costs, "
                                "the critical path and wall times on 1, 8, 64 workers; run nothing")
    ] = False,
) -> None:
    """Train (or load) every defense in CONFIG, run its attacks, append results.jsonl, and
    write the leaderboard and figures of all its results. The config, device, plugins and output
    places are checked before any model is built."""
    from hrsbench.api import (
        check_device,
        check_device_form,
        planned_cells,
        resolve_config,
        with_precision,
    )

    if dry_run:
        cfg, source = resolve_config(config)
        cfg = with_precision(cfg, precision)
        check_device_form(device)
        from hrsbench.engine.executors import make_executor

        make_executor(executor, ray_address, threads_per_task, device, gpus_per_task)
        # a plan for a GPU run may be made on a machine without one
        check_device(device, executor, present=False)
        out = out or Path("runs") / Path(config or "quick").stem
        from hrsbench.plugin.registry import registry

        reg = registry()
        print_plan(planned_cells(cfg, reg, device), reg, out, cache_dir, source, device)
        return
    from hrsbench.api import run as run_config

    out = out or Path("runs") / Path(config or "quick").stem

    def started(line: str) -> None:
        console.print(f"[bold]hrsbench {__version__}[/bold] · {escape(line)}", soft_wrap=True)

    with progress_reporter() as report:
        done = run_config(config, out=out, data_dir=data_dir, cache_dir=cache_dir, device=device,
                          leaderboard=leaderboard, wait=wait, executor=executor,
                          ray_address=ray_address, threads_per_task=threads_per_task,
                          gpus_per_task=gpus_per_task, precision=precision, progress=report,
                          on_start=started,
                          on_wait=lambda who: print(f"waiting for {who}, which holds {out}",
                                                    flush=True))
    console.print(results_table(done.lines, done.results.parent))
    console.print(f"results: {done.results}", markup=False, soft_wrap=True)
    console.print(f"leaderboard: {done.leaderboard} (figures in {done.results.parent / 'plots'})",
                  markup=False, soft_wrap=True)


def print_plan(cells: list[Any], reg: Any, out: Path, cache_dir: Path | None, source: str,
               device: str = "cpu") -> None:
    """``--dry-run``: the plan of the run, from the timings of OUT's results
    (:mod:`hrsbench.engine.plan`)."""
    from hrsbench.engine.plan import dry_run
    from hrsbench.plugin.cache import ModelCache

    console.print(f"plan of {source} → {out} (estimates from {out / 'results.jsonl'})",
                  markup=False, soft_wrap=True)
    for line in dry_run(cells, out, ModelCache(cache_dir), reg, device):
        console.print(line, markup=False, soft_wrap=True, highlight=False)


@contextmanager
def progress_reporter() -> Iterator[Callable[[str, str, int, int], None]]:
    """A live bar on a terminal; plain, periodic log lines when stdout is a file or pipe."""
    if not console.is_terminal:
        from hrsbench.progress import LogProgress

        yield LogProgress()
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        tasks: dict[str, TaskID] = {}

        def report(task: str, label: str, done: int, total: int) -> None:
            if task not in tasks:
                tasks[task] = bar.add_task(escape(label), total=total)
            bar.update(tasks[task], description=escape(label), completed=done, total=total)

        yield report


def results_table(lines: list[dict[str, Any]], out: Path) -> Table:
    """The run's lines, each with its model's sanity verdict as the run's ``sanity.json`` holds
    it (the reporting step computed it)."""
    from hrsbench.report.sanity import annotate, read_report

    table = Table(title="results")
    for col in ("defense", "params", "attack", "ε", "setting", "clean acc", "ASR", "defense rate",
                "sanity"):
        table.add_column(col)
    for r in annotate(lines, reports=read_report(out)):
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

    from hrsbench.plugin.catalog import rows, setting_help
    from hrsbench.plugin.registry import PluginWarning, load_registry

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
    for name, text in setting_help().items():
        settings.add_row(name, escape(text))
    console.print(settings)
    for line in reg.warnings:
        err.print(f"warning: {escape(line)}", highlight=False, soft_wrap=True)


SkipBad = Annotated[
    bool, typer.Option(help="Leave malformed result lines out (each named) instead of stopping")
]
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
    skip_bad: SkipBad = False,
) -> None:
    """Merge result files into one markdown leaderboard ranked by mean DES (docs/des.md)."""
    from hrsbench.paths import writable_dir, writable_file
    from hrsbench.report.leaderboard import write_leaderboard

    check_results(results)
    writable_file(out, "--out")
    if plots is not None:
        writable_dir(plots, "--plots")
    path, figures = write_leaderboard(results, out, plots=plots, base=base, eta=eta,
                                      behaviour=_behaviour(dt_range, rate_range),
                                      reference=reference, skip_bad=skip_bad)
    console.print(f"leaderboard: {path}" + (f" ({len(figures)} figure files in {plots})"
                                             if plots else ""), markup=False, soft_wrap=True)


@app.command()
@friendly
def plot(
    results: Annotated[list[Path], typer.Argument(help="results.jsonl files, from any runs")],
    out: Annotated[Path, typer.Option(help="Folder for the PNG and SVG figures")],
    base: Annotated[str, typer.Option(help="Defense that Δt and Δd are measured from")] = BASE,
    eta: Annotated[float, typer.Option(help="η in DES = Δd / (Δt + η)")] = ETA,
    dt_range: DtRange = None,
    rate_range: RateRange = None,
    skip_bad: SkipBad = False,
) -> None:
    """Draw ASR against ε (Figure 4), the DES scatter (Figures 2, 5) and gradient deviation
    against defense rate (Figure A4) from result files."""
    from hrsbench.paths import writable_dir
    from hrsbench.report.build import build_report
    from hrsbench.report.merge import merge_results
    from hrsbench.report.plots import write_plots

    check_results(results)
    writable_dir(out, "--out")
    report = build_report(merge_results(*results, skip_bad=skip_bad), base=base, eta=eta,
                          behaviour=_behaviour(dt_range, rate_range))
    files = write_plots(report, out)
    console.print(f"{len(files)} figure files in {out}", markup=False, soft_wrap=True)


def check_results(paths: list[Path]) -> None:
    """Result files to read exist, are files and hold something: a report of nothing, dated
    now, would look like a finished one."""
    for p in paths:
        if not p.is_file():
            what = "a folder; give its results.jsonl" if p.is_dir() else "not there"
            raise HrsbenchError(f"results file {p} is {what}")
    if all(p.stat().st_size == 0 for p in paths):
        raise HrsbenchError(f"no result lines in {', '.join(map(str, paths))}; run hrsbench run "
                            "first, or give the results.jsonl of a finished run")


@app.command()
@friendly
def repair(
    results: Annotated[Path, typer.Argument(help="A results.jsonl with malformed lines")],
) -> None:
    """Keep every good line of a results file and move the malformed, invalid or torn ones to
    RESULTS.bad, so the file reads again (their cells rerun on the next hrsbench run)."""
    from hrsbench.locks import run_lock
    from hrsbench.results.store import repair as repair_file

    check_results([results])
    # a run appending meanwhile would lose lines
    with run_lock(results.parent, advice="repair it when that run has finished"):
        kept, moved = repair_file(results)
    where = f"; moved to {results}.bad" if moved else ""
    console.print(f"{results}: kept {kept} line(s), {moved} bad{where}", markup=False,
                  soft_wrap=True)


@app.command()
@friendly
def presets() -> None:
    """List the built-in configs: what each runs and its estimated cost."""
    from hrsbench.engine.config import load_config, preset_notes
    from hrsbench.engine.config import presets as names

    table = Table(title="hrsbench presets (hrsbench run NAME)")
    for col in ("name", "what it runs", "estimated cost"):
        table.add_column(col, overflow="fold")
    for name in names():
        cfg, _ = load_config(name)
        summary, cost = preset_notes(name)
        counts = [(len(cfg.defenses), "defense"), (len(cfg.attacks), "attack"),
                  (len(cfg.threats), "threat"), (cfg.epochs, "epoch")]
        parts = [cfg.dataset, *(f"{n} {word}{'s' if n != 1 else ''}" for n, word in counts if n)]
        runs = " · ".join(parts)
        table.add_row(name, escape(f"{summary}. {runs}"), escape(cost))
    console.print(table)
    console.print("Output goes to runs/NAME unless --out says otherwise; the header comment of "
                  "hrsbench/presets/NAME.toml says more.", markup=False)


@app.command("config-schema")
@friendly
def config_schema() -> None:
    """Print the run config's JSON schema: every key, its type, range and default."""
    import json

    from hrsbench.engine.config import schema

    print(json.dumps(schema(), indent=2))


def entry() -> None:  # pragma: no cover - console script shim for python -m
    app(prog_name="hrsbench")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(entry())
