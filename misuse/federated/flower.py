"""The Flower apps: a server that aggregates with a chosen rule, and a site client.

This module imports ``flwr`` and is only imported by ``misuse federate`` in the federated
environment (see docs/federated.md). It uses Flower's gRPC server (``flwr.server.start_server``) and
clients (``flwr.client.start_client``): two plain processes, no app bundle to build, which is what a
gateway or a plant runs. Flower marks that API deprecated in favour of SuperLink/SuperNode; the
model, site and aggregation code here does not depend on which one carries the messages.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flwr
import grpc
import numpy as np
from flwr.common import (
    EvaluateRes,
    FitRes,
    NDArrays,
    Parameters,
    Scalar,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import FedAvg

from misuse.errors import MisuseError
from misuse.federated.aggregate import aggregate, gaussian_epsilon
from misuse.federated.params import save_global
from misuse.federated.site import SiteTrainer


def _wire_bytes(p: Parameters) -> int:
    return sum(len(t) for t in p.tensors)


class RuleStrategy(FedAvg):  # type: ignore[misc]
    """Flower's FedAvg with its aggregation replaced by :func:`misuse.federated.aggregate.aggregate`.

    Sampling, configuration and evaluation are Flower's; only ``aggregate_fit`` differs. It also
    keeps, per round, the bytes received from the sites and (with ``record``) a JSON description of
    every message a site sent: for fit, array shapes and dtypes, example count, metric names and
    values (and the raw parameter bytes beside it); for evaluate, loss, example count and metrics.
    """

    def __init__(self, rule: str, beta: float = 0.2, record: Path | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rule = rule
        self.beta = beta
        self.record = record
        self.rounds: list[dict[str, Any]] = []
        self.final: NDArrays | None = None

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[Any],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        """Aggregate the sites' arrays with the configured rule."""
        if not results:
            return None, {}
        pairs = [(parameters_to_ndarrays(r.parameters), int(r.num_examples)) for _, r in results]
        arrays = aggregate(self.rule, pairs, self.beta)
        self.final = arrays
        sent = [_wire_bytes(r.parameters) for _, r in results]
        losses = [float(r.metrics.get("train_loss", np.nan)) for _, r in results]
        self.rounds.append(
            {
                "round": server_round,
                "sites": len(results),
                "failures": len(failures),
                "bytes_from_sites": sent,
                "bytes_to_each_site": sum(len(t) for t in ndarrays_to_parameters(arrays).tensors),
                "train_loss": losses,
            }
        )
        for k, (proxy, r) in enumerate(results):
            self._record(
                f"fit-r{server_round}-{k}",
                server_round,
                proxy,
                r,
                tensor_type=r.parameters.tensor_type,
                arrays=[{"shape": list(a.shape), "dtype": str(a.dtype)} for a in parameters_to_ndarrays(r.parameters)],
            )
            if self.record is not None:
                (self.record / f"fit-r{server_round}-{k}.bin").write_bytes(b"".join(r.parameters.tensors))
        return ndarrays_to_parameters(arrays), {}

    def _record(self, name: str, server_round: int, proxy: ClientProxy, res: Any, **fields: Any) -> None:
        """With ``record``, write what one site sent this round as ``<name>.json`` (no-op otherwise)."""
        if self.record is None:
            return
        self.record.mkdir(parents=True, exist_ok=True)
        msg = {
            "round": server_round,
            "site": proxy.cid,
            "status": str(res.status.code),
            "num_examples": int(res.num_examples),
            **fields,
            "metrics": {str(m): v for m, v in res.metrics.items()},
        }
        (self.record / f"{name}.json").write_text(json.dumps(msg, default=str))

    def aggregate_evaluate(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, EvaluateRes]],
        failures: list[Any],
    ) -> tuple[float | None, dict[str, Scalar]]:
        """Flower's example-weighted mean loss; with ``record``, each site's evaluate message too."""
        for k, (proxy, r) in enumerate(results):
            self._record(f"evaluate-r{server_round}-{k}", server_round, proxy, r, loss=r.loss)
        loss, metrics = super().aggregate_evaluate(server_round, results, failures)
        return loss, metrics


def run_server(
    address: str,
    initial: NDArrays,
    rounds: int,
    sites: int,
    rule: str,
    out: Path | None,
    meta: dict[str, Any],
    fit_config: dict[str, Scalar],
    beta: float = 0.2,
    record: Path | None = None,
    round_timeout: float | None = 300.0,
) -> dict[str, Any]:
    """Run ``rounds`` rounds with exactly ``sites`` sites; save and return the summary.

    ``fit_config`` is sent to every site each round (``epochs``, ``lr``, ``clip_norm``,
    ``noise_multiplier``, ``seed``); the round number is added.
    """

    def on_fit(server_round: int) -> dict[str, Scalar]:
        return {**fit_config, "round": server_round}

    strategy = RuleStrategy(
        rule,
        beta=beta,
        record=record,
        fraction_fit=1.0,
        fraction_evaluate=1.0,
        min_fit_clients=sites,
        min_evaluate_clients=sites,
        min_available_clients=sites,
        initial_parameters=ndarrays_to_parameters(initial),
        on_fit_config_fn=on_fit,
        accept_failures=False,
    )
    start = time.monotonic()
    history = flwr.server.start_server(
        server_address=address,
        config=flwr.server.ServerConfig(num_rounds=rounds, round_timeout=round_timeout),
        strategy=strategy,
    )
    noise = float(fit_config.get("noise_multiplier", 0.0) or 0.0)
    clip = float(fit_config.get("clip_norm", 0.0) or 0.0)
    summary = {
        **meta,
        "rule": rule,
        "rounds": rounds,
        "sites": sites,
        "seconds": round(time.monotonic() - start, 2),
        "loss_by_round": [[int(r), float(v)] for r, v in history.losses_distributed],
        "per_round": strategy.rounds,
        "privacy": {
            "clip_norm": clip or None,
            "noise_multiplier": noise,
            "delta": 1e-5,
            "epsilon": gaussian_epsilon(noise, rounds, 1e-5) if clip > 0 and noise > 0 else None,
            "unit": "one site's whole data, over all rounds (local DP at the site, no sampling amplification)",
            "neighbours": "the site's data replaced by any other: L2 sensitivity 2 x clip_norm per update",
            "bound": "the weakest site's; a site with its own --clip-norm/--noise-multiplier floor may be stronger",
        },
    }
    final = strategy.final if strategy.final is not None else initial
    if out is not None:
        save_global(out, summary, final)
    return summary


class SiteClient(flwr.client.NumPyClient):  # type: ignore[misc]
    """A Flower NumPy client around a :class:`SiteTrainer` (local data stays in the trainer).

    A :class:`~misuse.errors.MisuseError` raised while handling a message (a configuration the
    site refuses) is kept in ``failure`` so that :func:`run_site` can raise it as it was.
    """

    def __init__(self, trainer: SiteTrainer, on_round: Callable[[int, dict[str, float]], None] | None = None) -> None:
        self.trainer = trainer
        self.on_round = on_round
        self.failure: MisuseError | None = None
        self.messages = 0

    def get_parameters(self, config: dict[str, Scalar]) -> NDArrays:
        """The current local parameters (Flower asks only when no initial ones were given)."""
        return self.trainer.model.get_arrays()

    def fit(self, parameters: NDArrays, config: dict[str, Scalar]) -> tuple[NDArrays, int, dict[str, Scalar]]:
        """Train one round locally and return the (protected) parameters."""
        self.messages += 1
        try:
            arrays, n, metrics = self.trainer.fit(parameters, config)
        except MisuseError as exc:
            self.failure = exc
            raise
        if self.on_round is not None:
            self.on_round(int(config.get("round", 0)), metrics)
        return arrays, n, dict(metrics)

    def evaluate(self, parameters: NDArrays, config: dict[str, Scalar]) -> tuple[float, int, dict[str, Scalar]]:
        """Loss of the global parameters on the local validation data."""
        self.messages += 1
        try:
            loss, n = self.trainer.evaluate(parameters)
        except MisuseError as exc:
            self.failure = exc
            raise
        return loss, n, {}


def run_site(
    address: str, trainer: SiteTrainer, on_round: Callable[[int, dict[str, float]], None] | None = None
) -> None:
    """Connect to the server at ``address`` and take part until the server ends the run.

    Raises
    ------
    MisuseError
        One line naming ``address`` when the server cannot be reached or the connection is lost
        (gRPC's own error in brackets), or the error with which the site refused a message.
    """
    client = SiteClient(trainer, on_round)
    try:
        flwr.client.start_client(server_address=address, client=client.to_client())
    except grpc.RpcError as exc:
        code = exc.code().name if isinstance(exc, grpc.Call) else type(exc).__name__
        details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
        if client.messages == 0:
            what = f"cannot reach the federation server at {address}; is `misuse federate server` running there?"
        else:
            what = f"lost the federation server at {address} after {client.messages} message(s)"
        raise MisuseError(f"{what} (gRPC {code}: {details})") from None
    except Exception:
        if client.failure is not None:
            raise client.failure from None
        raise
