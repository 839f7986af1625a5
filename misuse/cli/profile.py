"""``misuse profile build|show`` and ``misuse eval sea``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich import box
from rich.table import Table
from rich.text import Text

from misuse.cli.common import DEFAULT_PROJECT, JsonOpt, ProjectOpt, console, emit_json, err_console, handled, open_store
from misuse.cli.models import check_options
from misuse.errors import InvalidParameterError, NotFoundError
from misuse.profiles.check import profile_alerts
from misuse.profiles.profile import EntityProfile, ProfileBook
from misuse.profiles.temporal import WEEKDAYS
from misuse.workflows import parse_time

profile_app = typer.Typer(
    help="Per-entity behavioural profiles: build them, show one, check new events against them.", no_args_is_help=True
)
eval_app = typer.Typer(help="Evaluations on public benchmarks.", no_args_is_help=True)
DatasetOpt = Annotated[str, typer.Option("--dataset", "-d", help="Stored dataset the profiles describe.")]
_SHADES = " ░▒▓█"


UntilOpt = Annotated[str | None, typer.Option("--until", help="Learn only from events before this UTC date/time.")]


@profile_app.command("build")
def build(
    dataset: DatasetOpt = "default", until: UntilOpt = None, project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
) -> None:  # fmt: skip
    """Learn one profile per entity from a stored dataset and save them in the store."""
    check_options(until=until)
    cut = parse_time(until, "until") if until else None
    with handled():
        store = open_store(project)
        book = ProfileBook()
        for part in store.iter_events(dataset, columns=None):
            book.learn(part if cut is None else part[part["ts"] < cut])
        if not len(book):
            raise NotFoundError(f"{store.root}: dataset {dataset!r} has no events (known: {store.dataset_names()})")
        n = book.save(store, dataset)
        if as_json:
            emit_json({"dataset": dataset, "profiles": n})
            return
        console.print(f"saved [bold]{n:,}[/] profiles of dataset '{dataset}'")


@profile_app.command("check")
def check(
    dataset: DatasetOpt = "default",
    since: Annotated[
        str | None, typer.Option("--since", help="Assess events from this UTC date/time on (default: all).")
    ] = None,
    window: Annotated[float, typer.Option("--window", min=1.0, help="Window length in seconds.")] = 3600.0,
    kinds: Annotated[
        str, typer.Option("--kinds", help="Comma-separated event kinds to assess ('' for all).")
    ] = "command",
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
) -> None:
    """Compare new events with the stored profiles; store typed warnings (impersonation, insider and
    inadvertent misuse) as alerts. Build the profiles first, on history: ``misuse profile build --until``."""
    check_options(since=since)
    start = parse_time(since, "since") if since else None
    with handled():
        store = open_store(project)
        book = ProfileBook.load(store, dataset)
        frame = store.events(dataset)
        if start is not None:
            frame = frame[frame["ts"] >= start]
        wanted = tuple(k.strip() for k in kinds.split(",") if k.strip()) or None
        found = profile_alerts(book, frame, window=window, kinds=wanted)
        store.add_alerts(found, dataset=dataset, model="profiles")
        if as_json:
            emit_json([a.to_dict() for a in found])
            return
        if not found:
            console.print(f"no warnings on {len(frame):,} events of {len(book):,} profiled entities")
            return
        table = Table(title=f"{len(found)} warning(s), stored as alerts")
        for col in ("window_start", "entity", "misuse_type", "severity", "summary"):
            table.add_column(col, overflow="fold")
        for a in found:
            table.add_row(str(a.window_start)[:19], a.entity, a.misuse_type, a.severity, a.summary)
        console.print(table)


def _heatmap(p: EntityProfile) -> Text:
    grid = p.temporal.grid
    top = float(grid.max()) or 1.0
    text = Text("      " + "".join(f"{h:<3d}" if h % 3 == 0 else "" for h in range(24)) + "\n")
    for d, name in enumerate(WEEKDAYS):
        text.append(f"{name}   ")
        for h in range(24):
            level = int(np.ceil(grid[d, h] / top * (len(_SHADES) - 1)))
            text.append(_SHADES[level], style="cyan")
        text.append("\n")
    return text


def _bars(items: list[tuple[str, float]], width: int = 30) -> Table:
    table = Table(show_header=False, box=None, pad_edge=False)
    top = max((s for _, s in items), default=1.0) or 1.0
    for name, share in items:
        table.add_row(name, Text("█" * max(1, round(share / top * width)), style="green"), f"{share:.1%}")
    return table


def _numeric(p: EntityProfile) -> Table:
    table = Table("attribute", "p01", "p25", "median", "p75", "p99", "n")
    for name, sk in sorted(p.numeric.items()):
        q = sk.quantiles()
        table.add_row(name, *(f"{q[k]:,.4g}" for k in (0.01, 0.25, 0.5, 0.75, 0.99)), f"{int(sk.count):,}")
    return table


@profile_app.command("show")
def show(
    entity: Annotated[str, typer.Argument(help="Device or user whose baseline to explain.")],
    dataset: DatasetOpt = "default",
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
) -> None:
    """Explain an entity's baseline in words, with an hour x weekday heatmap, top actions and quantiles.

    Uses the stored profiles (``misuse profile build``); without them, learns from the stored events.
    """
    with handled():
        store = open_store(project)
        try:
            book = ProfileBook.load(store, dataset, entity)
        except NotFoundError:
            frame = store.events(dataset)
            frame = frame[frame["entity"].astype(str) == entity]
            if frame.empty:
                known = sorted(store.events(dataset, columns=["ts", "entity"])["entity"].astype(str).unique())[:10]
                raise NotFoundError(f"dataset {dataset!r} has no events of entity {entity!r} (e.g. {known})") from None
            book = ProfileBook().learn(frame)
        p = book[entity]
        if as_json:
            emit_json({"description": p.describe(), "profile": p.to_dict()})
            return
        for line in p.describe():
            console.print(line, highlight=False)
        console.print("\n[bold]Activity by weekday and hour (UTC)[/]")
        console.print(_heatmap(p))
        console.print("[bold]Top actions[/]")
        console.print(_bars(p.footprint.actions.top(10)))
        if p.numeric:
            console.print("[bold]Numeric attributes[/]")
            console.print(_numeric(p))


def _default_sea() -> Path:
    root = Path(os.environ.get("MISUSE_DATA_DIR", Path.cwd().parent / "shared" / "data"))
    return root / "sea-masquerade"


@eval_app.command("sea")
def sea(
    path: Annotated[Path | None, typer.Option("--path", help="SEA folder (users/, masquerade_summary.txt).")] = None,
    models: Annotated[
        str,
        typer.Option(
            "--models", help="Comma-separated: nb_per_user, nb_rehearsed, naive_bayes, markov, gru, ensemble."
        ),
    ] = "nb_per_user,nb_rehearsed,naive_bayes,markov,ensemble",
    target_fa: Annotated[float, typer.Option("--target-fa", help="False-alarm rate the threshold aims at.")] = 0.01,
    users: Annotated[int, typer.Option("--users", help="Evaluate only the first N users (quick runs).")] = 50,
    no_update: Annotated[bool, typer.Option("--no-update", help="Do not fold unflagged blocks in.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """The SEA masquerade protocol: thresholds from training data only, figures beside the published ones."""
    from misuse.eval.sea import PUBLISHED, load_sea, run_sea

    with handled():
        root = path or _default_sea()
        if not (root / "masquerade_summary.txt").exists():
            raise InvalidParameterError(f"{root}: not a SEA folder (masquerade_summary.txt missing); pass --path")
        data = load_sea(root, n_users=users)
        names = [m.strip() for m in models.split(",") if m.strip()]
        tick = None if as_json else (lambda msg: err_console.print(f"[dim]{msg}[/]"))
        results = run_sea(data, names, target_fa=target_fa, update=not no_update, seed=seed, tick=tick)
        if as_json:
            emit_json({"results": {r.model: r.metrics for r in results}, "published": PUBLISHED})
            return
        _print_sea(results, PUBLISHED, target_fa, not no_update)


def _print_sea(results: list[Any], published: list[dict[str, Any]], target_fa: float, update: bool) -> None:
    m0 = results[0].metrics
    console.print(
        f"SEA: {len(results[0].scores[0])} users, {m0['masquerade_blocks']} masquerade and "
        f"{m0['clean_blocks']:,} clean test blocks of 100 commands; train = first 5,000 commands per user."
    )
    console.print(
        "nb_per_user and nb_rehearsed: naive Bayes with one threshold per user, sharing the false-alarm "
        "budget the Neyman-Pearson way (clean spread from held-out training blocks, hits from other users' "
        "blocks). nb_per_user: alpha, spread, inflation and budget chosen on a pseudo-protocol inside the "
        "training data (first 17 blocks train, the other 33 are scored in order with updating). "
        "nb_rehearsed: smoothing, burst discount, inflation and budget chosen by a rehearsal inside the "
        "training data (a third of the users play outsiders; the others' first 25 blocks train, their "
        "other 25, with injected masquerade runs, are scored in order with updating)."
    )
    console.print(
        "Other models: thresholds from training data only: scores normalised by 5-fold held-out training blocks, "
        f"alarm above the pooled {1 - target_fa:.0%} quantile of them; parameters and normaliser chosen on "
        "an outsider proxy (half the users' training blocks against models of the other half). "
        + ("Unflagged test blocks are folded into the profile (updating)." if update else "No updating.")
    )
    table = Table(
        "model",
        "hits",
        "false alarms",
        "ROC-AUC",
        "@1% FA",
        "@1.3% FA",
        "@3% FA",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    for col in table.columns:
        col.no_wrap, col.min_width = True, len(str(col.header))
    for r in results:
        m = r.metrics
        table.add_row(
            r.model,
            f"{m['hit_rate']:.1%} ({m['hits']})",
            f"{m['false_alarm_rate']:.2%} ({m['false_alarms']})",
            f"{m['roc_auc']:.3f}",
            f"{m['hits_at_0.01_fa']:.1%}",
            f"{m['hits_at_0.013_fa']:.1%}",
            f"{m['hits_at_0.03_fa']:.1%}",
        )
    console.print(table)
    others = Table(
        "published on the same data", "hits", "false alarms", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True
    )
    for p in published:
        hits, fa = p["hits"], p["false_alarms"]
        others.add_row(
            p["method"],
            f"{hits:.1%}" if isinstance(hits, float) else str(hits),
            f"{fa:.1%}" if isinstance(fa, float) else str(fa),
        )
    console.print(others)
    console.print(
        "hits / false alarms (blocks) = operating point of the training-set threshold; the hits @x% FA "
        "and the ROC points below read the pooled test ROC (ranking figures, not operating points)."
    )
    roc = Table(
        "FA",
        *[r.model for r in results],
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
        title="hits on the test ROC",
    )
    for i, (g, _) in enumerate(results[0].metrics["roc_points"]):
        roc.add_row(f"{g:.1%}", *[f"{r.metrics['roc_points'][i][1]:.1%}" for r in results])
    console.print(roc)
    for r in results:
        for name, ch in r.metrics["selection"].items():
            if name == r.model and "chosen" in ch and "pseudo_fa" in ch["chosen"]:
                c = ch["chosen"]
                console.print(
                    f"{name}: alpha {c['alpha']}, {c['population']} population, "
                    f"spread {c['spread']} x{c['inflate']}, budget {c['target']:.2%}; "
                    f"pseudo-protocol false alarms {c['pseudo_fa']:.2%}, outsider hits {c['proxy_hits']:.1%}",
                    highlight=False,
                )
            elif name == r.model and "chosen" in ch:
                c = ch["chosen"]
                console.print(
                    f"{name}: {c['model']} smoothing, burst {c['burst']}, spread x{c['inflate']}, "
                    f"budget {c['target']:.2%}; rehearsal false alarms {c['rehearsal_fa']:.2%} "
                    f"of {ch['clean']:,} clean blocks, hits {c['rehearsal_hits']:.1%} of {ch['injected']:,} injected",
                    highlight=False,
                )
            elif name == r.model:
                console.print(
                    f"{name}: params {ch['params']}, normaliser {ch['normaliser']}, weights {ch['weights']}, "
                    f"outsider-proxy hits at 1% FA {ch['proxy_hits_at_1%_fa']:.1%}",
                    highlight=False,
                )
