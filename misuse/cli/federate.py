"""``misuse federate server`` and ``misuse federate site``: federated training with Flower.

Flower (``flwr``) pins older web frameworks than the service, so it lives in its own environment
(``.venv-fed``, see docs/federated.md); from an environment without it these commands say so on
one line and exit with code 1.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Annotated, Any

import typer

from misuse.cli.badinput import dead_letters, print_dead_letters
from misuse.cli.common import DEFAULT_PROJECT, EXIT_FAIL, JsonOpt, ProjectOpt, console, emit_json, err_console, handled
from misuse.errors import InvalidParameterError

federate_app = typer.Typer(
    help="Federated learning across sites with Flower (raw data never leaves a site).", no_args_is_help=True
)

NO_FLOWER = (
    "misuse federate needs Flower (flwr), which is kept out of the main environment (it pins older "
    "fastapi/starlette): run `make venv-fed` or "
    "`python3 -m venv .venv-fed && .venv-fed/bin/pip install -e '.[federated]'`, "
    "then use `.venv-fed/bin/misuse federate ...` (docs/federated.md)"
)

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="autoencoder (window features) or actions (naive Bayes).")]
HiddenOpt = Annotated[int, typer.Option("--hidden", help="Autoencoder code size (same at server and sites).")]
BucketsOpt = Annotated[int, typer.Option("--buckets", help="Hashed action vocabulary size (same everywhere).")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the initial weights and local shuffling.")]


def _require_flower() -> None:
    if importlib.util.find_spec("flwr") is None:
        err_console.print(f"[bold red]error:[/] {NO_FLOWER}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_FAIL)


def _quiet_flower() -> None:
    """Flower logs warnings and errors only, without its deprecation notice for start_server/start_client
    (docs/federated.md says why they are used) and without the traceback of an error this package
    raises on purpose (:func:`handled` prints that one on one line)."""
    import logging

    from misuse.errors import MisuseError

    def keep(record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], MisuseError):
            return False
        return not str(record.msg).lstrip().startswith("DEPRECATED FEATURE")

    flwr_log = logging.getLogger("flwr")
    flwr_log.setLevel(logging.WARNING)
    flwr_log.addFilter(keep)


@federate_app.command("server")
def server(
    address: Annotated[str, typer.Option("--address", help="host:port to listen on.")] = "127.0.0.1:8080",
    model: ModelOpt = "autoencoder",
    rounds: Annotated[int, typer.Option("--rounds", help="Training rounds.")] = 5,
    sites: Annotated[int, typer.Option("--sites", help="Sites that must join every round.")] = 2,
    strategy: Annotated[
        str, typer.Option("--strategy", help="fedavg, fedmedian or trimmed (trimmed mean).")
    ] = "fedavg",
    beta: Annotated[float, typer.Option("--beta", help="Share trimmed at each end by 'trimmed'.")] = 0.2,
    epochs: Annotated[int, typer.Option("--epochs", help="Local passes per round (autoencoder).")] = 2,
    lr: Annotated[float, typer.Option("--lr", help="Local Adam learning rate (autoencoder).")] = 1e-2,
    hidden: HiddenOpt = 8,
    buckets: BucketsOpt = 4096,
    clip_norm: Annotated[
        float, typer.Option("--clip-norm", help="Clip each site update to this L2 norm (0 = off).")
    ] = 0.0,
    noise: Annotated[
        float, typer.Option("--noise-multiplier", help="Gaussian noise std = this x clip norm, added at the site.")
    ] = 0.0,
    out: Annotated[Path | None, typer.Option("--out", help="Folder for the global model and the run summary.")] = None,
    record: Annotated[
        Path | None, typer.Option("--record", help="Folder where every message a site sends is written (audit).")
    ] = None,
    seed: SeedOpt = 0,
    as_json: JsonOpt = False,
) -> None:
    """Run a Flower server that aggregates the sites' models for a number of rounds."""
    _require_flower()
    with handled():
        from misuse.federated.aggregate import STRATEGIES, check_trim
        from misuse.federated.data import WINDOW_FEATURES
        from misuse.federated.flower import run_server
        from misuse.federated.site import make_model

        if strategy not in STRATEGIES:
            raise InvalidParameterError(f"--strategy must be one of {', '.join(STRATEGIES)}; got {strategy!r}")
        if rounds < 1 or sites < 1:
            raise InvalidParameterError(f"--rounds and --sites must be >= 1; got {rounds} and {sites}")
        if strategy == "trimmed":  # every round aggregates --sites sites: fail now, not after round 1
            try:
                check_trim(beta, sites)
            except InvalidParameterError as exc:
                raise InvalidParameterError(f"--strategy trimmed --beta {beta:g} --sites {sites}: {exc}") from None
        if noise > 0 and clip_norm <= 0:
            raise InvalidParameterError(f"--noise-multiplier {noise} needs --clip-norm > 0 (the update's sensitivity)")
        _quiet_flower()
        initial = make_model(model, n_features=len(WINDOW_FEATURES), hidden=hidden, buckets=buckets, seed=seed)
        meta: dict[str, Any] = {"model": model, "hidden": hidden, "buckets": buckets, "seed": seed}
        if model == "autoencoder":
            meta["features"] = list(WINDOW_FEATURES)
        config = {"epochs": epochs, "lr": lr, "clip_norm": clip_norm, "noise_multiplier": noise, "seed": seed}
        summary = run_server(
            address, initial.get_arrays(), rounds, sites, strategy, out, meta, config, beta=beta, record=record
        )
        if as_json:
            emit_json(summary)
            return
        for r, loss in summary["loss_by_round"]:
            console.print(f"round {r}: validation loss {loss:.5f}")
        eps = summary["privacy"]["epsilon"]
        if eps is not None:
            console.print(f"privacy: ({eps:.2f}, 1e-05)-DP per site over {rounds} rounds")
        if out is not None:
            console.print(f"global model saved in {out}")


@federate_app.command("site")
def site(
    data: Annotated[list[Path], typer.Option("--data", "-d", help="Local data file (repeat for several).")],
    server_address: Annotated[str, typer.Option("--server", help="host:port of the server.")] = "127.0.0.1:8080",
    fmt: Annotated[str | None, typer.Option("--format", "-f", help="Input format (sniffed if omitted).")] = None,
    mapping: Annotated[
        str | None,
        typer.Option("--mapping", help="Column mapping for csv/jsonl: a built-in name or a YAML file (as for ingest)."),
    ] = None,
    clip_norm: Annotated[
        float,
        typer.Option("--clip-norm", help="Always clip this site's update to at most this L2 norm (0 = the server's)."),
    ] = 0.0,
    noise: Annotated[
        float,
        typer.Option(
            "--noise-multiplier", help="Always add at least this much noise (x clip norm), whatever the server asks."
        ),
    ] = 0.0,
    model: ModelOpt = "autoencoder",
    window: Annotated[float, typer.Option("--window", help="Window length in seconds (autoencoder).")] = 60.0,
    hidden: HiddenOpt = 8,
    buckets: BucketsOpt = 4096,
    seed: SeedOpt = 0,
    poison_scale: Annotated[
        float | None, typer.Option("--poison-scale", hidden=True, help="Evaluation only: send a scaled update.")
    ] = None,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
) -> None:
    """Join a federation: train on local data, send only model parameters and metrics.

    ``--clip-norm`` and ``--noise-multiplier`` are the site's own privacy floor: each round the
    site applies the smaller clip norm and the larger noise multiplier of its own and the server's.
    Bad records of the local data are counted and set aside in
    ``<project>/deadletter/federate-site.jsonl`` (they stay on the site, like all its data).
    """
    _require_flower()
    with handled():
        from misuse.federated.data import WINDOW_FEATURES, read_events, split_rows, user_actions, window_matrix
        from misuse.federated.flower import run_site
        from misuse.federated.site import SiteTrainer, make_model

        if clip_norm < 0 or noise < 0:
            raise InvalidParameterError(f"--clip-norm and --noise-multiplier must be >= 0; got {clip_norm} and {noise}")
        if noise > 0 and clip_norm <= 0:
            raise InvalidParameterError(f"--noise-multiplier {noise} needs --clip-norm > 0 (the update's sensitivity)")
        dead = dead_letters(project, "federate-site")
        events = read_events(data, fmt, mapping, dead)
        print_dead_letters(dead, stderr=as_json)
        net = make_model(model, n_features=len(WINDOW_FEATURES), hidden=hidden, buckets=buckets, seed=seed)
        train: Any
        valid: Any
        if model == "autoencoder":
            X, _ = window_matrix(events, window)
            tr, va = split_rows(len(X), seed=seed)
            train, valid = X[tr], X[va] if len(va) else X[tr]
        else:
            users = user_actions(events)
            train = {u: a[: max(1, int(len(a) * 0.8))] for u, a in users.items()}
            valid = {u: a[max(1, int(len(a) * 0.8)) :] or a for u, a in users.items()}
        trainer = SiteTrainer(
            net, train, valid, poison_scale=poison_scale, clip_norm=clip_norm or None, noise_multiplier=noise
        )
        _quiet_flower()

        def on_round(r: int, metrics: dict[str, float]) -> None:
            if not as_json:
                _, clip, z = trainer.sent_[-1]
                sent = f"clipped to {clip:g}, noise x{z:g}" if clip > 0 else "without clipping or noise"
                console.print(f"round {r}: trained, local loss {metrics['train_loss']:.5f}; update sent {sent}")

        run_site(server_address, trainer, on_round)
        eps = trainer.epsilon()
        if as_json:
            finite = eps is not None and eps != float("inf")
            emit_json(
                {
                    "site_done": True,
                    "train_examples": len(train),
                    "rounds": len(trainer.sent_),
                    "epsilon": eps if finite else None,
                    "delta": 1e-5 if finite else None,
                }
            )
            return
        if eps is not None:
            n = len(trainer.sent_)
            if eps == float("inf"):
                console.print(f"privacy at this site: none (of {n} update(s), some went out without clipping or noise)")
            else:
                console.print(f"privacy at this site: ({eps:.2f}, 1e-05)-DP over {n} rounds, from its own protection")
        console.print("federation finished")
