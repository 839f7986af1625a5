"""The federated building blocks without Flower: models, aggregation, protection, site rounds."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from misuse.errors import InvalidParameterError, ParseError, SchemaError
from misuse.federated.aggregate import (
    aggregate,
    check_trim,
    clip_and_noise,
    fedavg,
    fedmedian,
    gaussian_epsilon,
    trimmed_mean,
    update_norm,
)
from misuse.federated.data import read_events, user_actions, window_matrix
from misuse.federated.models import ActionNB, FedAutoencoder
from misuse.federated.params import array_to_bytes, bytes_to_array, load_global, payload_bytes, save_global
from misuse.federated.site import METRIC_KEYS, SiteTrainer, make_model


def _blobs(seed: int, n: int, shift: float, d: int = 6) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, 2))
    mix = np.random.default_rng(99).normal(size=(2, d))  # the same low-rank structure at every site
    return base @ mix + shift + 0.05 * rng.normal(size=(n, d))


def _rounds(trainers: list[SiteTrainer], rule: str, rounds: int, start: list[np.ndarray]) -> list[np.ndarray]:
    arrays = start
    for r in range(1, rounds + 1):
        results = [t.fit(arrays, {"round": r, "epochs": 2, "lr": 0.02})[:2] for t in trainers]
        arrays = aggregate(rule, results)
    return arrays


def test_fedavg_of_moments_is_the_pooled_moments() -> None:
    sites = [_blobs(1, 300, 0.0), _blobs(2, 100, 3.0)]
    models = [FedAutoencoder(6, hidden=2) for _ in sites]
    counts = [m.fit_local(X, epochs=0) for m, X in zip(models, sites, strict=True)]
    results = [(m.get_arrays(), n) for m, n in zip(models, counts, strict=True)]

    mean, sq = fedavg(results)[:2]

    pooled = np.vstack(sites)
    t = np.sign(pooled) * np.log1p(np.abs(pooled))
    np.testing.assert_allclose(mean, t.mean(axis=0))
    np.testing.assert_allclose(sq, (t**2).mean(axis=0))


def test_median_and_trimmed_mean_resist_one_absurd_site() -> None:
    honest = [([np.full(3, v)], 10) for v in (1.0, 1.1, 0.9, 1.05)]
    poisoned = [*honest, ([np.full(3, 1e6)], 10)]

    avg = fedavg(poisoned)[0]
    med = fedmedian(poisoned)[0]
    trim = trimmed_mean(poisoned, beta=0.2)[0]

    assert avg.min() > 1e5
    assert np.all(np.abs(med - 1.0) < 0.2)
    assert np.all(np.abs(trim - 1.0) < 0.2)


def test_trimmed_mean_refuses_a_beta_that_trims_nothing() -> None:
    three = [([np.full(2, v)], 1) for v in (0.0, 1.0, 100.0)]

    with pytest.raises(InvalidParameterError) as info:
        trimmed_mean(three, beta=0.2)  # floor(0.2 x 3) = 0: it would be the plain mean, 33.7

    assert str(info.value) == (
        "trimmed mean with beta 0.2 over 3 site(s) trims nothing (floor(0.2 x 3) = 0): "
        "needs beta >= 0.34 for 3 sites, or at least 5 sites"
    )
    np.testing.assert_array_equal(trimmed_mean(three, beta=0.34)[0], [1.0, 1.0])  # one cut at each end
    np.testing.assert_array_equal(trimmed_mean(three, beta=0.0)[0], [101 / 3, 101 / 3])  # beta 0: the mean
    with pytest.raises(InvalidParameterError, match=r"over 2 site\(s\) trims nothing .*needs at least 5 sites"):
        aggregate("trimmed", three[:2], beta=0.2)
    assert check_trim(0.25, 4) == check_trim(0.2, 5) == 1


def test_aggregate_rejects_bad_input() -> None:
    with pytest.raises(InvalidParameterError, match="unknown aggregation strategy 'mean'"):
        aggregate("mean", [([np.zeros(2)], 1)])
    with pytest.raises(SchemaError, match="different shapes"):
        fedavg([([np.zeros(2)], 1), ([np.zeros(3)], 1)])
    with pytest.raises(InvalidParameterError, match="beta"):
        trimmed_mean([([np.zeros(2)], 1)], beta=0.5)


def test_clipping_bounds_the_update_and_noise_has_the_stated_scale() -> None:
    old = [np.zeros(4000)]
    new = [np.full(4000, 1.0)]

    clipped = clip_and_noise(new, old, clip_norm=2.0)
    noisy = clip_and_noise(old, old, clip_norm=2.0, noise_multiplier=0.5, seed=1)

    assert update_norm(clipped, old) == pytest.approx(2.0)
    assert float(noisy[0].std()) == pytest.approx(1.0, rel=0.05)
    with pytest.raises(InvalidParameterError, match="needs a clip_norm"):
        clip_and_noise(new, old, clip_norm=None, noise_multiplier=1.0)


def test_two_clipped_updates_differ_by_up_to_twice_the_clip_norm() -> None:
    old = [np.zeros(3)]

    a = clip_and_noise([np.array([5.0, 0.0, 0.0])], old, clip_norm=1.0)  # one site's data ...
    b = clip_and_noise([np.array([-7.0, 0.0, 0.0])], old, clip_norm=1.0)  # ... replaced by other data

    assert update_norm(a, b) == pytest.approx(2.0)  # the sensitivity the accounting must use: 2 C


def test_epsilon_matches_hand_computed_values_for_sensitivity_two_clip_norms() -> None:
    # Gaussian noise z C on sensitivity 2 C: RDP(a) = rounds a (2C)^2 / (2 z^2 C^2) = c a, c = 2 rounds / z^2;
    # min_a c a + ln(1/delta) / (a - 1) = c + 2 sqrt(c ln(1/delta)); ln(1e5) = 11.512925
    # z = 2, 1 round: c = 0.5, 0.5 + 2 sqrt(5.756463) = 0.5 + 2 x 2.399263 = 5.298526
    assert gaussian_epsilon(2.0, 1, 1e-5) == pytest.approx(5.298526, abs=1e-5)
    # z = 1, 20 rounds (docs/federated.md): c = 40, 40 + 2 sqrt(460.517019) = 40 + 2 x 21.459660 = 82.919320
    assert gaussian_epsilon(1.0, 20, 1e-5) == pytest.approx(82.919320, abs=1e-5)
    # the closed form is the minimum over orders a of the RDP conversion
    a = np.linspace(1.0001, 50, 200_000)
    assert gaussian_epsilon(1.0, 20, 1e-5) == pytest.approx(float((40 * a + math.log(1e5) / (a - 1)).min()), rel=1e-6)


def test_epsilon_grows_with_rounds_and_shrinks_with_noise() -> None:
    e1 = gaussian_epsilon(1.0, 5)
    assert gaussian_epsilon(1.0, 20) > e1 > gaussian_epsilon(4.0, 5)
    assert math.isinf(gaussian_epsilon(0.0, 5))


def test_federated_autoencoder_learns_and_separates_outliers() -> None:
    sites = [_blobs(s, 400, 0.0) for s in range(3)]
    trainers = [SiteTrainer(FedAutoencoder(6, hidden=2), X, X[:100]) for X in sites]
    start = FedAutoencoder(6, hidden=2).get_arrays()
    global_model = FedAutoencoder(6, hidden=2)
    global_model.set_arrays(_rounds(trainers, "fedavg", 1, start))
    early = global_model.evaluate_local(sites[0])

    global_model.set_arrays(_rounds(trainers, "fedavg", 8, start))

    assert global_model.evaluate_local(sites[0]) < early
    outliers = np.random.default_rng(5).normal(scale=5.0, size=(50, 6))
    assert np.median(global_model.score(outliers)) > np.quantile(global_model.score(sites[0]), 0.95)


def test_poisoned_site_hurts_fedavg_more_than_the_median() -> None:
    sites = [_blobs(s, 300, 0.0) for s in range(5)]
    start = FedAutoencoder(6, hidden=2).get_arrays()
    losses = {}
    for rule in ("fedavg", "fedmedian"):
        trainers = [SiteTrainer(FedAutoencoder(6, hidden=2), X, X) for X in sites]
        trainers[0].poison_scale = -10.0
        model = FedAutoencoder(6, hidden=2)
        model.set_arrays(_rounds(trainers, rule, 5, start))
        losses[rule] = model.evaluate_local(sites[1])

    assert losses["fedmedian"] < losses["fedavg"]


def test_naive_bayes_federated_population_equals_centralised() -> None:
    a = {"u1": ["ls", "cd"] * 30, "u2": ["vi", "make"] * 10}
    b = {"u3": ["gcc", "ls"] * 50}
    site_models = [ActionNB(buckets=128), ActionNB(buckets=128)]
    counts = [m.fit_local(d) for m, d in zip(site_models, (a, b), strict=True)]
    results = [(m.get_arrays(), n) for m, n in zip(site_models, counts, strict=True)]
    central = ActionNB(buckets=128)
    central.fit_local({**a, **b})

    site_models[0].set_arrays(fedavg(results))

    np.testing.assert_allclose(site_models[0].population, central.population)
    assert site_models[0].score_block("u1", ["gcc", "gcc"]) > site_models[0].score_block("u1", ["ls", "cd"])


def test_site_round_returns_fixed_shapes_and_known_metrics_only() -> None:
    small, big = _blobs(0, 50, 0.0, d=5), _blobs(1, 500, 0.0, d=5)
    start = FedAutoencoder(5, hidden=3).get_arrays()
    out = []
    for X in (small, big):
        arrays, n, metrics = SiteTrainer(FedAutoencoder(5, hidden=3), X, X).fit(start, {"epochs": 1})
        out.append((arrays, n, metrics))

    assert [a.shape for a in out[0][0]] == [a.shape for a in out[1][0]] == [a.shape for a in start]
    assert payload_bytes(out[0][0]) == payload_bytes(out[1][0])
    assert (out[0][1], out[1][1]) == (50, 500)
    for _, _, metrics in out:
        assert set(metrics) <= METRIC_KEYS
        assert all(isinstance(v, float) and math.isfinite(v) for v in metrics.values())


def test_site_noise_is_reproducible_only_with_the_sites_own_seed() -> None:
    X = _blobs(0, 80, 0.0, d=4)
    start = FedAutoencoder(4, hidden=2).get_arrays()
    config = {"epochs": 1, "round": 3, "seed": 0, "clip_norm": 1.0, "noise_multiplier": 1.0}

    def sent(noise_seed: int | None) -> np.ndarray:
        trainer = SiteTrainer(FedAutoencoder(4, hidden=2), X, X, noise_seed=noise_seed)
        return np.concatenate([a.ravel() for a in trainer.fit(start, config)[0]])

    assert np.array_equal(sent(7), sent(7))
    assert not np.array_equal(sent(7), sent(8))
    assert not np.array_equal(sent(None), sent(None))  # deployment: fresh noise, unknown to the server


def test_site_floor_protects_its_update_whatever_the_server_asks() -> None:
    users = {"u1": ["ls", "cd"] * 50, "u2": ["vi"] * 40}
    start = ActionNB(buckets=4096).get_arrays()
    trainer = SiteTrainer(ActionNB(buckets=4096), users, users, noise_seed=3, clip_norm=0.5, noise_multiplier=2.0)

    sent = trainer.fit(start, {"round": 1, "clip_norm": 0.0, "noise_multiplier": 0.0})[0]  # the server asks for none
    trainer.fit(start, {"round": 2, "clip_norm": 0.2, "noise_multiplier": 1.0})  # stronger clip, weaker noise

    assert float(np.std(sent[0] - start[0])) == pytest.approx(2.0 * 0.5, rel=0.05)  # noise z x C was added
    assert trainer.sent_ == [(1, 0.5, 2.0), (2, 0.2, 2.0)]
    assert trainer.epsilon() == pytest.approx(gaussian_epsilon(2.0, 2))


def test_site_refuses_server_privacy_settings_it_cannot_honour() -> None:
    X = _blobs(0, 40, 0.0, d=4)
    start = FedAutoencoder(4, hidden=2).get_arrays()
    plain = SiteTrainer(FedAutoencoder(4, hidden=2), X, X)
    floored = SiteTrainer(FedAutoencoder(4, hidden=2), X, X, clip_norm=1.0, noise_multiplier=1.0)

    with pytest.raises(InvalidParameterError, match=r"noise_multiplier 1\.0 without a clip_norm"):
        plain.fit(start, {"clip_norm": 0.0, "noise_multiplier": 1.0})
    with pytest.raises(InvalidParameterError, match="the server sent noise_multiplier nan"):
        floored.fit(start, {"clip_norm": 1.0, "noise_multiplier": float("nan")})  # NaN must not mean "no noise"
    with pytest.raises(InvalidParameterError, match="needs a clip_norm"):
        SiteTrainer(FedAutoencoder(4, hidden=2), X, X, noise_multiplier=1.0)
    assert plain.epsilon() is None and floored.epsilon() is None  # nothing was sent
    plain.fit(start, {})
    assert plain.epsilon() == math.inf


def test_site_reads_csv_through_a_column_mapping(tmp_path: Path) -> None:
    csv = tmp_path / "flows.csv"
    rows = [
        f"{1_700_000_000 + 20 * i},cam-{i % 2},10.0.0.{i % 3},{'mqtt' if i % 2 else 'https'},{100 + i}"
        for i in range(60)
    ]
    csv.write_text("stamp,device,dst,proto,bytes_out\n" + "\n".join(rows) + "\n")
    mapping = tmp_path / "flows.yaml"
    mapping.write_text(
        "ts: {column: stamp, epoch: s}\nentity: device\npeer: dst\nkind: {constant: flow}\n"
        "action: proto\nnum: [bytes_out]\n"
    )

    events = read_events([csv], mapping=mapping)
    X, _ = window_matrix(events, 60.0)

    assert len(events) == 60
    assert sorted(user_actions(events)) == ["cam-0", "cam-1"]
    assert X.shape[1] == 20 and len(X) > 0
    with pytest.raises(ParseError, match="needs a column mapping: --mapping"):
        read_events([csv])


def test_parameters_roundtrip_without_pickle(tmp_path: Path) -> None:
    arrays = make_model("autoencoder", n_features=4, hidden=2).get_arrays()

    back = [bytes_to_array(array_to_bytes(a)) for a in arrays]
    save_global(tmp_path, {"model": "autoencoder"}, arrays)
    meta, loaded = load_global(tmp_path)

    for a, b, c in zip(arrays, back, loaded, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    assert meta == {"model": "autoencoder"}
    with pytest.raises(SchemaError, match="not a plain numpy array"):
        bytes_to_array(b"\x93NUMPY garbage")


def test_model_parameters_are_checked() -> None:
    with pytest.raises(InvalidParameterError, match="hidden must be an int >= 1"):
        FedAutoencoder(4, hidden=0)
    with pytest.raises(SchemaError, match="expects rows of 4 features"):
        FedAutoencoder(4).score(np.zeros((3, 5)))
    with pytest.raises(SchemaError, match="shape"):
        FedAutoencoder(4).set_arrays([np.zeros(1)] * 6)
    with pytest.raises(InvalidParameterError, match="unknown federated model kind 'gbm'"):
        make_model("gbm")
