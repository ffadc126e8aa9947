"""Leaderboards: result files from any number of runs and machines merged into one markdown
report, defenses ranked by mean DES for every dataset, attack, strength and setting.

Merging (:mod:`.merge`) is deterministic and every resolved duplicate is listed in the report;
the numbers come from :func:`~hrsbench.report.build.build_report`, computed once for the markdown
and the figures.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from hrsbench.report.build import Report, build_report, flags
from hrsbench.report.des import BASE, ETA, BehaviourRange, varying_keys
from hrsbench.report.frame import MODEL, missing, several_image_sets
from hrsbench.report.merge import last_finished, merge_results
from hrsbench.report.reprogramming import reprogramming_markdown, reprogramming_table
from hrsbench.report.sanity import write_report
from hrsbench.report.stats import rank_number, resolution_sentence
from hrsbench.report.tables import (
    FLAG_FIELDS,
    count,
    interval,
    isnum,
    markdown_table,
    num,
    params,
    pct,
    pp,
)
from hrsbench.report.worstcase import SINGLE_LINE, saturated
from hrsbench.results.storage import atomic_write


def _first_seen(values: pd.Series) -> list[Any]:
    return list(dict.fromkeys(values))


def render_markdown(
    report: Report,
    generated: datetime | None = None,
    figures: list[str] | None = None,
    summary: list[str] | None = None,
) -> str:
    """The leaderboard as markdown: provenance header, duplicates, ``summary`` (markdown lines,
    e.g. the comparison with a paper, shown before the long per-attack tables), and per dataset
    a clean accuracy table and one ranked table per attack, strength and setting."""
    generated = (generated or last_finished(report.merged.results)
                 or datetime.now(UTC))
    scored = report.scored
    out = ["# hrsbench leaderboard", ""]
    out += _header(report, generated)
    if report.merged.duplicates:
        out += ["", "## Duplicate cells", "",
                f"{len(report.merged.duplicates)} cell(s) found on more than one line; the most "
                "recently finished line is kept, ties broken by the highest content hash.", ""]
        for d in sorted(report.merged.duplicates, key=lambda d: d.cell_key):
            r = d.record
            what = " ".join(filter(None, [r["defense"], params(r.get("params")).strip("—")]))
            what += f", {r['attack']}"
            if r["attack"] != "none":
                what += f" ε={r['attack_strength']:g} {r['setting']}"
            dropped = ", ".join(f"`{o}`" for o in d.dropped)
            out.append(f"- `{d.cell_key}` ({what}): kept `{d.kept}`, dropped {dropped} — "
                       f"{d.reason}")
    out += _headline_section(report)
    out += summary or []
    if scored.empty:
        out += ["", "No result lines."]
        return "\n".join(out) + "\n"
    for dataset in sorted(scored["dataset"].unique()):
        data = scored[scored["dataset"] == dataset]
        out += ["", f"## {dataset}", "", "### Clean accuracy", ""]
        out += _clean_table(report, data)
        out += _attack_sections(report, data)
    if figures:
        out += ["", "## Figures", ""]
        out += [f"- [{Path(f).name}]({f})" for f in figures]
    return "\n".join(out) + "\n"


def _header(report: Report, generated: datetime) -> list[str]:
    lines = report.per_model

    def values(col: str) -> str:
        if col not in lines.columns:
            return "—"
        vals = sorted({str(v) for v in lines[col] if isnum(v)})
        return ", ".join(f"`{v}`" for v in vals) or "—"

    sources = ", ".join(f"`{p}` ({n} lines)" for p, n in report.merged.sources)
    rows = [
        ["data as of", generated.isoformat(timespec="seconds")],
        ["sources", sources],
        ["cells", str(len(report.merged.records))],
        ["hrsbench version(s)", values("hrsbench_version")],
        ["result schema", values("schema_version")],
        ["plugins", _plugins(report.merged.records)],
        ["config hashes", values("config_hash")],
        ["seeds", values("seed")],
        ["training precision", values("precision")],
        ["torch / ART", f"{values('torch_version')} / {values('art_version')}"],
        ["compute", _compute(report.merged.records)],
        ["base defense", f"`{report.base}`"],
        ["η", f"{report.eta:g} ({100 * report.eta:g} pp, the unit of Δt)"],
        ["behaviour range", report.behaviour.describe()],
    ]
    legend = ("Rates are percentages, Δt (clean-accuracy drop) and Δd (defense-rate gain) are "
              f"percentage points against `{report.base}` under the same attack, and η is in "
              f"the same unit ({100 * report.eta:g} pp); DES = Δd / (Δt + η) (docs/des.md). "
              "Brackets are 95 % bootstrap intervals over the attacked and clean images "
              "(lines without per-example outcomes have none, and the clean-accuracy table "
              "shows ± the spread of repeated predictions there, not a sampling error). "
              "Families (a defense over its strength sweep) are ranked by mean DES, headline "
              "rows by adaptive DES: a rank is the place of the estimate (1 + the number "
              "ranked above it; `=` marks equal estimates) and, in brackets, the 95 % range "
              "of that place when each bootstrap resample ranks them all on its own values, "
              "so `2 (1–4)` is second by estimate and anywhere from first to fourth within "
              "the noise. *via white-box* marks a deterministic defense's white-box line "
              "standing for another setting.")
    if report.unpooled is not None:
        legend += (" Lines that differ only in their training seed are pooled: rates, Δt and Δd "
                   "are means over seeds, each seed against the base of the same seed, DES is "
                   "mean Δd / (mean Δt + η), and the brackets add the variation between seeds "
                   "(docs/des.md, \"Several training seeds\"). The headline table pools them "
                   "the same way: each seed's worst case against the base of the same seed.")
    return markdown_table(["", ""], rows) + ["", legend]


def _headline_section(report: Report) -> list[str]:
    """Per dataset, ε, targeting and attacked images, one row per model: what a reader quotes.
    The worst case over attacks (:mod:`.worstcase`) gives the defense rate and adaptive DES."""
    worst = report.worst
    if worst.empty:
        return []
    out = ["", "## Headline: the worst case over attacks", "",
           "Per model and threat budget, each attacked example counts as broken by whichever "
           "attack × setting breaks it best (picked on half the prediction draws, scored on the "
           "other half, ties to the strongest line: docs/des.md), and the worst case is never "
           "weaker than the model's strongest single line: where that line is stronger than "
           "the per-example pick, the row is at that line (note \"at its strongest single "
           "line\"), which errs on the attack's side, since that line is chosen on the draws "
           "that score it. *Adaptive DES* uses that worst case over all settings, "
           "*white-box DES* over non-adaptive white-box attacks only (APGD with EOT is "
           "adaptive); brackets are 95 % intervals."]
    clean = _clean_intervals(report.per_model)
    if report.unpooled is not None:  # a pooled row's model is its seeds' models joined by "+"
        clean.update(_clean_intervals(report.scored))
    keys = ["dataset", "attack_strength", "targeted", "n_test"]
    for key, budget in worst.groupby(keys, sort=True, dropna=False):
        dataset, eps, targeted, n_test = key
        title = (f"### Headline · {dataset} · ε={eps:g} · "
                 f"{'targeted' if targeted else 'untargeted'} · {count(n_test)} attacked images")
        verdicts = _verdicts(report, _at_budget(report.per_model, key))
        if report.unpooled is not None:
            verdicts.update(_verdicts(report, _at_budget(report.scored, key)))
        out += ["", title, ""]
        out += _headline_table(report, budget, clean, verdicts)
    return out


def _at_budget(lines: pd.DataFrame, key: tuple[Any, ...]) -> pd.DataFrame:
    """The attack lines of one headline budget (dataset, ε, targeting, attacked images): they
    carry their model's sanity verdict at that budget (:func:`.sanity.annotate`)."""
    mask = lines["attack"] != "none"
    for col, value in zip(("dataset", "attack_strength", "targeted", "n_test"), key, strict=True):
        mask &= lines[col].isna() if missing(value) else lines[col] == value
    return lines[mask]


def _headline_table(report: Report, budget: pd.DataFrame, clean: dict[str, tuple[Any, Any]],
                    verdicts: dict[str, str]) -> list[str]:
    single = [isnum(n) and SINGLE_LINE in n for n in budget["des_note"]]
    out = [f"Without per-example outcomes, each model's {SINGLE_LINE.split(' (')[0]} stands "
           "in for the worst case, without intervals; ranks follow the estimates and say "
           "nothing about which differences are resolved.", ""] if all(single) else []
    if budget["saturated"].fillna(False).astype(bool).all():
        return out + _saturated_headline(report, budget, clean)
    varying = {name: varying_keys(fam["params"]) for name, fam in
               report.scored[report.scored["defense"].isin(budget["defense"])].groupby("defense")}
    ordered = budget.assign(  # by the place of the estimate, then the estimate
        _base=budget["defense"] != report.base,
        _rank=budget["rank"].map(rank_number),
        _des=pd.to_numeric(budget["adaptive_des"], errors="coerce"),
    ).sort_values(["_base", "_rank", "_des", "defense"], ascending=[True, True, False, True],
                  na_position="last", kind="stable")
    base = pd.to_numeric(budget.loc[budget["defense"] == report.base, "worst_defense_rate"])
    if len(base) and bool((base >= 1.0).all()):
        out += [f"`{report.base}` resists every attack at this budget (100 %): a defense can "
                "only lose here, so every DES is at most 0 and the ranks order losses.", ""]
    pooled = "n_seeds" in budget.columns  # rows of several seeds show their spread
    seed_of = {r.get(MODEL): r.get("seed") for r in report.merged.records}
    several = not pooled and len({seed_of.get(m) for m in budget["model"]}) > 1
    rows = []
    for _, r in ordered.iterrows():
        lo, hi = clean.get(r["model"], (None, None))
        note = "" if r["defense"] == report.base or not isnum(r["des_note"]) else r["des_note"]
        note = "; ".join(p for p in note.split("; ") if p != SINGLE_LINE or not all(single))
        if several:  # one row per trained model: say which seed it is
            note = "; ".join(filter(None, [f"seed {seed_of.get(r['model'])}", note]))
        rank = r["rank"] if isinstance(r["rank"], str) and r["rank"] else "—"  # no DES: no rank
        rows.append([
            "ref" if r["defense"] == report.base else rank,
            r["defense"], params(r["params"], varying.get(r["defense"], [])),
            interval(r["clean_accuracy"], lo, hi, digits=2),
            *([_seed_spread(r, partial(interval, digits=2))] if pooled else []),
            _with_interval(r, "worst_defense_rate"),
            "ref" if r["defense"] == report.base else _with_interval(r, "adaptive_des", 1, 2),
            "ref" if r["defense"] == report.base else _with_interval(r, "whitebox_des", 1, 2),
            r["strongest"] or "—", verdicts.get(r["model"], ""), _seeds_note(r, note),
        ])
    return out + markdown_table(["rank", "defense", "params", "clean acc",
                                 *(["seed spread (min … max)"] if pooled else []),
                                 "worst-case defense rate",
                                 "adaptive DES", "white-box DES", "strongest most often",
                                 "sanity", "note"], rows)


def _saturated_headline(report: Report, budget: pd.DataFrame,
                        clean: dict[str, tuple[Any, Any]]) -> list[str]:
    """A budget where every model, the base included, is at 0 % or every one at 100 %: one
    sentence and the models' rates, no ranks and no DES (each would be 0 [0, 0])."""
    broken = bool((pd.to_numeric(budget["worst_defense_rate"]) <= 0).all())
    what = ("0 %: the attacks break every attacked example of every model" if broken else
            "100 %: the attacks break no attacked example of any model")
    out = [f"Saturated: every model's worst-case defense rate, the base's included, is {what}. "
           "Nothing is ranked and no DES is given: at this budget the models cannot be told "
           "apart.", ""]
    ordered = budget.assign(_base=budget["defense"] != report.base).sort_values(
        ["_base", "defense", "model"], kind="stable")
    rows = [[r["defense"], params(r["params"], report.varying.get(r["defense"], [])),
             interval(r["clean_accuracy"], *clean.get(r["model"], (None, None)), digits=2),
             _with_interval(r, "worst_defense_rate"), r["strongest"] or "—"]
            for _, r in ordered.iterrows()]
    return out + markdown_table(["defense", "params", "clean acc", "worst-case defense rate",
                                 "strongest most often"], rows)


def _seeds_note(r: Mapping[str, Any], note: str) -> str:
    """``note``, led by how many seeds a pooled row is the mean of, as a pooled line's is."""
    if isnum(r.get("n_seeds")) and int(r["n_seeds"]) > 1:
        return "; ".join(filter(None, [f"mean of {int(r['n_seeds'])} seeds", note]))
    return note


def _clean_intervals(scored: pd.DataFrame) -> dict[str, tuple[Any, Any]]:
    """Clean-accuracy interval per model, from its lines."""
    if "clean_accuracy_lo" not in scored.columns:
        return {}
    out: dict[str, tuple[Any, Any]] = {}
    for model, lo, hi in zip(scored[MODEL], scored["clean_accuracy_lo"],
                             scored["clean_accuracy_hi"], strict=True):
        if isnum(lo) and model not in out:
            out[model] = (lo, hi)
    return out


def _verdicts(report: Report, lines: pd.DataFrame) -> dict[str, str]:
    """The sanity verdict of each model of ``lines``."""
    flag = report.flag_field
    if not flag:
        return {}
    return {m: flags(v) for m, v in zip(lines[MODEL], lines[flag], strict=True)}


def _plugins(records: list[dict[str, Any]]) -> str:
    """The plugin packages and versions the lines were made with."""
    found = {(r[f"{side}_package"], r[f"{side}_version"]) for r in records
             for side in ("defense", "attack") if r.get(f"{side}_package")}
    return ", ".join(f"`{p} {v}`" for p, v in sorted(found)) or "—"


def _compute(records: list[dict[str, Any]]) -> str:
    """Where the time went, summed over result lines (so a resumed run counts each cell once,
    whatever its wall clock): model training against everything else (attacks, threats,
    clean evaluation)."""
    train = sum(float(r.get("train_time_s") or 0) for r in records)
    rest = sum(float(r.get("time_s") or 0) for r in records)
    total = train + rest
    if total <= 0:
        return "—"
    return (f"{total / 60:.1f} min: training {train / 60:.1f} min ({100 * train / total:.0f}%), "
            f"attacks and evaluation {rest / 60:.1f} min ({100 * rest / total:.0f}%)")


def _clean_table(report: Report, data: pd.DataFrame) -> list[str]:
    """One row per trained model (and clean evaluation), best clean accuracy first; the
    clean-only line is used where a model has one."""
    own = data[~data["via_whitebox"].astype(bool)]
    models = own.assign(_clean=(own["attack"] != "none"),
                        n_clean=own["n_clean"].map(lambda v: v if isnum(v) else None))
    models = models.sort_values("_clean", kind="stable")
    models = models.drop_duplicates(subset=[MODEL, "n_clean"], keep="first")
    models = models.sort_values(["clean_accuracy", "defense", "params_key"],
                                ascending=[False, True, True], kind="stable")
    pooled = "n_seeds" in models.columns
    rows = []
    for _, m in models.iterrows():
        keys = sorted((m["params"] or {}).keys())
        rows.append([
            m["defense"], params(m["params"], keys), *_clean_cells(report, m),
            count(m["n_clean"]), count(m["seed"]),
            *([count(m["n_seeds"]), _seed_spread(m)] if pooled else []),
            count(m["epochs"]), "all" if m["n_train"] is None else str(m["n_train"]),
            "" if isnum(m["delta_t"]) or not isnum(m["des_note"]) else m["des_note"],
        ])
    header = ["defense", "params", "clean accuracy", "Δt", "n_clean", "seed"]
    header += ["seeds", "seed spread (min … max)"] if pooled else []
    return markdown_table([*header, "epochs", "n_train", "note"], rows)


def _clean_cells(report: Report, m: Mapping[str, Any]) -> tuple[str, str]:
    """Clean accuracy and Δt with their intervals where the model's lines carry per-example
    outcomes; else the accuracy ± the spread of its repeated predictions."""
    if not isnum(m.get("clean_accuracy_lo")):
        return pct(m["clean_accuracy"], m["clean_accuracy_std"]), pp(m["delta_t"])
    own = m["defense"] == report.base  # its own reference: Δt is 0 by definition
    return (_with_interval(m, "clean_accuracy", digits=2),
            pp(m["delta_t"]) if own else _with_interval(m, "delta_t", signed=True, digits=2))


def _seed_spread(m: Mapping[str, Any], fmt: Callable[[Any], str] = pct) -> str:
    """Clean accuracy's lowest and highest value over a pooled model's seeds, each as ``fmt``
    writes it (as its table writes clean accuracy)."""
    if not isnum(m["n_seeds"]) or int(m["n_seeds"]) < 2:
        return "—"
    return _span(m["clean_accuracy_seed_min"], m["clean_accuracy_seed_max"], fmt)


def _attack_sections(report: Report, data: pd.DataFrame) -> list[str]:
    attacked = data[data["attack"] != "none"]
    out: list[str] = []
    settings = _first_seen(attacked["setting"])
    for attack in sorted(attacked["attack"].unique()):
        of_attack = attacked[attacked["attack"] == attack]
        shown_keys = varying_keys(
            [json.loads(k) for k in _first_seen(of_attack["attack_params_key"])])
        several = several_image_sets(of_attack)
        order = of_attack.assign(_s=of_attack["setting"].map(settings.index)).sort_values(
            ["attack_params_key", "targeted", "attack_strength", "n_test", "_s"], kind="stable")
        for key, group in order.groupby(
            ["attack_params_key", "targeted", "attack_strength", "n_test", "setting"], sort=False,
            dropna=False,
        ):
            if group["via_whitebox"].astype(bool).all():
                continue  # a setting only copies of white-box lines fill: nobody attacked in it
            params_key, targeted, strength, n_test, setting = key
            shown = params(json.loads(params_key), shown_keys) if shown_keys else ""
            title = f"### {attack}{f' ({shown})' if shown else ''} · ε={strength:g} · {setting}"
            title += " · targeted" if targeted else " · untargeted"
            title += f" · {count(n_test)} attacked images" if several else ""
            group_key = (data["dataset"].iloc[0], attack, params_key, strength, setting,
                         targeted, n_test)
            out += ["", title, ""]
            out += _group_tables(report, group, group_key)
    return out


def _group_tables(report: Report, group: pd.DataFrame, key: tuple[Any, ...]) -> list[str]:
    s = report.summary_of(key)
    if saturated(list(group["defense_rate"])):
        s = s.iloc[:0]
        broken = bool((pd.to_numeric(group["defense_rate"]) <= 0).all())
        out = [f"Every line here, the base included, has a {0 if broken else 100} % defense "
               f"rate: the attack breaks {'every attacked example' if broken else 'nothing'}, "
               "so no defense is ranked."]
    elif s.empty:
        out = ([f"No DES: no defended line here has a matching `{report.base}` line."]
               if (group["defense"] != report.base).any()
               else [f"Only `{report.base}` was attacked here: no defense to score."])
    else:
        out = _family_table(s, group)
        # more attacked images do not shrink the seeds' part of a pooled interval: no estimate
        pooled = "n_seeds" in group.columns and (pd.to_numeric(group["n_seeds"]) > 1).any()
        sentence = resolution_sentence(s, report.families, report.boot,
                                       None if pooled else _attacked_images(group))
        out += ["", sentence] if sentence else []
    return out + [""] + _line_table(report, group, s)


def _attacked_images(group: pd.DataFrame) -> int | None:
    n = pd.to_numeric(group["n_test"], errors="coerce").dropna()
    return int(n.iloc[0]) if len(n) else None


def _ranks(s: pd.DataFrame) -> dict[str, str]:
    """Family ranks with their ranges (``2 (1–4)``), as :func:`.stats.family_ranks` gave
    them."""
    if s.empty:
        return {}
    if "rank" in s.columns:
        return {d: r for d, r in zip(s["defense"], s["rank"], strict=True) if r}
    return {d: str(i) for i, d in enumerate(s["defense"], start=1)}


def _family_table(s: pd.DataFrame, group: pd.DataFrame) -> list[str]:
    ranks = _ranks(s)
    rows = []
    for _, f in s.iterrows():
        total = int(((group["defense"] == f["defense"]) & group["des"].notna()).sum())
        fit = "—"
        if isnum(f["slope"]):
            b = 100 * f["intercept"]
            fit = f"{f['slope']:.2f}·Δt {'−' if b < 0 else '+'} {abs(b):.2f}"
            if isnum(f.get("slope_lo")):
                fit += f" (slope {interval(f['slope'], f['slope_lo'], f['slope_hi'], 1, 2)})"
        rows.append([
            ranks.get(f["defense"], "—"), f["defense"], f"{int(f['n_des'])}/{total}",
            interval(f["mean_des"], f.get("mean_des_lo"), f.get("mean_des_hi"), 1, 2),
            num(f["std_des"]), fit,
            _span(f["delta_t_min"], f["delta_t_max"], pp),
            _span(f["rate_min"], f["rate_max"], pct),
        ])
    return markdown_table(["rank", "family", "points", "mean DES [95 %]", "DES std",
                           "fit Δd (pp)", "Δt range", "defense-rate range"], rows)


#: What a row of a line table reads (:func:`_line_table`, :func:`_note`).
_LINE_COLUMNS = frozenset(
    ["defense", "params", "des_note", "via_whitebox", "n_seeds", *FLAG_FIELDS]
    + [f"{c}{end}" for c in ("clean_accuracy", "delta_t", "defense_rate", "delta_d", "des")
       for end in ("", "_lo", "_hi")])


def _line_table(report: Report, group: pd.DataFrame, s: pd.DataFrame) -> list[str]:
    ranks = _ranks(s)
    flag = report.flag_field
    order = {d: i for i, d in enumerate(s["defense"])} if not s.empty else {}
    used = [c for c in group.columns if c in _LINE_COLUMNS]  # rows of these only: cheaper
    ordered = group[used].assign(
        _rank=group["defense"].map(lambda d: -1 if d == report.base else order.get(d, 10**6)),
        _strength=pd.to_numeric(group["strength"], errors="coerce"),
        _params_key=group["params_key"],
    ).sort_values(["_rank", "defense", "_strength", "_params_key"], kind="stable")[used]
    varying = report.varying
    header = ["rank", "defense", "params", "clean acc", "Δt", "defense rate", "Δd", "DES",
              "family mean DES"]
    header += [flag] if flag else []
    header += ["note"]
    details = []
    mean = dict(zip(s["defense"], s["mean_des"], strict=True)) if not s.empty else {}
    for r in ordered.to_dict("records"):  # far faster to walk than iterrows()
        own = r["defense"] == report.base  # its own reference: Δt and Δd are 0 by definition
        row = [
            "ref" if own else ranks.get(r["defense"], "—"),
            r["defense"], params(r["params"], varying[r["defense"]]),
            _with_interval(r, "clean_accuracy", digits=2),
            pp(r["delta_t"]) if own else _with_interval(r, "delta_t", signed=True, digits=2),
            _with_interval(r, "defense_rate"),
            pp(r["delta_d"]) if own else _with_interval(r, "delta_d", signed=True),
            _with_interval(r, "des", scale=1, digits=2), num(mean.get(r["defense"])),
        ]
        row += [flags(r[flag])] if flag else []
        details.append(row + [_note(report, r)])
    return markdown_table(header, details)


def _with_interval(r: Mapping[str, Any], col: str, scale: float = 100.0, digits: int = 1,
                   signed: bool = False) -> str:
    return interval(r[col], r.get(f"{col}_lo"), r.get(f"{col}_hi"), scale, digits, signed)


def _note(report: Report, r: Mapping[str, Any]) -> str:
    note = "" if r["defense"] == report.base or not isnum(r["des_note"]) else r["des_note"]
    if r["via_whitebox"]:
        note = "; ".join(filter(None, ["via white-box", note]))
    return _seeds_note(r, note)


def _span(lo: Any, hi: Any, fmt: Any) -> str:
    if not isnum(lo):
        return "—"
    return fmt(lo) if lo == hi else f"{fmt(lo)} … {fmt(hi)}"


def write_leaderboard(
    paths: list[str | Path],
    out: str | Path,
    plots: str | Path | None = None,
    base: str = BASE,
    eta: float = ETA,
    behaviour: BehaviourRange | None = None,
    generated: datetime | None = None,
    reference: str | Path | None = None,
    skip_bad: bool = False,
    sanity: list[dict[str, Any]] | None = None,
) -> tuple[Path, list[Path]]:
    """Merge ``paths``, write the markdown leaderboard to ``out`` and, if ``plots`` is given, the
    figures there (linked from the markdown); with ``reference``, a paper's numbers beside ours
    (:mod:`hrsbench.report.reference`). Returns the markdown path and the figure paths.
    ``skip_bad`` leaves malformed result lines out (with a warning) instead of stopping;
    ``sanity``: the gradient-masking reports of the merged lines, when already computed."""
    report = build_report(merge_results(*paths, skip_bad=skip_bad), base=base, eta=eta,
                          behaviour=behaviour, sanity=sanity)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figures = _figures(report, plots) if plots is not None else []
    links = [Path(os.path.relpath(f, out.parent)).as_posix() for f in figures
             if f.suffix == ".png"]
    summary = None
    if reference is not None:
        from hrsbench.report.reference import load_reference, reference_markdown

        summary = reference_markdown(load_reference(reference), report.scored, report.summary)
    text = render_markdown(report, generated, links, summary) + _reprogramming(report)
    atomic_write(out, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return out, figures


def _figures(report: Report, plots: str | Path) -> list[Path]:
    """The report's figures under ``plots`` (matplotlib is imported only when asked for)."""
    from hrsbench.report.plots import write_plots
    from hrsbench.report.reprogramming import write_reprogramming_figure

    figures = write_plots(report, plots)
    threats = report.threats
    if not threats.empty:
        figures += write_reprogramming_figure(threats, plots, ("png", "svg"))
    return figures


def _reprogramming(report: Report) -> str:
    """The reprogramming section, scored with the report's base and η ("" without threats)."""
    threats = report.threats
    if threats.empty:
        return ""
    table = reprogramming_table(threats, base=report.base, eta=report.eta)
    if table.empty:
        return ""
    return "\n" + reprogramming_markdown(table, "Adversarial reprogramming", report.eta) + "\n"


def write_run_reports(
    out_dir: str | Path,
    base: str = BASE,
    eta: float = ETA,
    reference: str | Path | None = None,
    leaderboard: str | Path | None = None,
) -> Path | None:
    """What ``hrsbench run`` leaves beside its ``results.jsonl``: ``sanity.json`` (the
    gradient-masking checks, computed once and shared with the leaderboard), ``leaderboard.md``
    (or the ``leaderboard`` path asked for) and its figures under ``plots/``; nothing if the run
    wrote no results."""
    out_dir = Path(out_dir)
    results = out_dir / "results.jsonl"
    if not results.is_file():
        return None
    sanity = write_report(out_dir, merge_results(results).records)
    path, _ = write_leaderboard([results], leaderboard or out_dir / "leaderboard.md",
                                plots=out_dir / "plots", base=base, eta=eta, reference=reference,
                                sanity=sanity)
    return path

