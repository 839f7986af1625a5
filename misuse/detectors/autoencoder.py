"""A deep autoencoder (torch, imported lazily): score = mean squared reconstruction error.

Features are robustly standardised (median / IQR of the training data) and clipped to +-``clip``;
the network is a symmetric MLP ``d -> hidden... -> code -> ...hidden -> d`` with ReLU. Weights are
saved as plain npz arrays (no pickle, no ``torch.save``), so loading cannot execute code, and
scoring of a saved model runs in numpy (torch is only needed to train).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from misuse.detectors.base import Detector


class DeepAutoencoder(Detector):
    """Deep autoencoder anomaly detector (N-BaIoT's model family); score >= 0.

    Parameters
    ----------
    hidden:
        Widths of the encoder's hidden layers as a tuple (the decoder mirrors them); the last one
        is the code size. Each >= 1.
    epochs:
        Training passes, >= 1.
    batch_size:
        Rows per step, >= 1.
    lr:
        Adam learning rate, > 0.
    clip:
        Standardised values are clipped to +-clip, > 0.
    seed:
        Seed of torch's initialisation and shuffling.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> X = pd.DataFrame(np.random.default_rng(0).normal(size=(300, 4)), columns=list("abcd"))
    >>> det = DeepAutoencoder(epochs=5).learn_many(X)  # doctest: +SKIP
    """

    _params: ClassVar[dict[str, Any]] = {
        "hidden": (32, 8),
        "epochs": 30,
        "batch_size": 64,
        "lr": 1e-3,
        "clip": 50.0,
        "seed": 0,
    }
    hidden: tuple[int, ...]
    epochs: int
    batch_size: int
    lr: float
    clip: float
    seed: int

    def _validate_params(self) -> None:
        self.hidden = tuple(self.hidden)
        self._check("hidden", len(self.hidden) >= 1 and all(int(h) >= 1 for h in self.hidden), "ints >= 1")
        self._check("epochs", isinstance(self.epochs, int) and self.epochs >= 1, "an int >= 1")
        self._check("batch_size", isinstance(self.batch_size, int) and self.batch_size >= 1, "an int >= 1")
        self._check("lr", float(self.lr) > 0, "> 0")
        self._check("clip", float(self.clip) > 0, "> 0")
        self._check("seed", isinstance(self.seed, int), "an int")

    def get_params(self) -> dict[str, Any]:
        """The keyword arguments (``hidden`` as a list, so that it survives JSON)."""
        params = super().get_params()
        params["hidden"] = [int(h) for h in self.hidden]
        return params

    def _z(self, X: np.ndarray) -> np.ndarray:
        c = float(self.clip)
        return np.asarray(np.clip((X - self.median_) / self.scale_, -c, c), dtype=np.float32)

    def _fit(self, X: np.ndarray) -> None:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny layers: threads only add contention
        try:
            self._train(torch, X)
        finally:
            torch.set_num_threads(threads)

    def _train(self, torch: Any, X: np.ndarray) -> None:
        torch.manual_seed(self.seed)
        gen = torch.Generator().manual_seed(self.seed)
        d = X.shape[1]
        widths = [d, *[int(h) for h in self.hidden]]
        layers: list[Any] = []
        for a, b in itertools.pairwise(widths):
            layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
        back = widths[::-1]
        for i, (a, b) in enumerate(itertools.pairwise(back)):
            layers.append(torch.nn.Linear(a, b))
            if i < len(back) - 2:
                layers.append(torch.nn.ReLU())
        net = torch.nn.Sequential(*layers)
        Z = torch.from_numpy(self._z(X))
        opt = torch.optim.Adam(net.parameters(), lr=float(self.lr))
        with torch.enable_grad():
            for _ in range(int(self.epochs)):
                order = torch.randperm(len(Z), generator=gen)
                for start in range(0, len(Z), int(self.batch_size)):
                    batch = Z[order[start : start + int(self.batch_size)]]
                    opt.zero_grad()
                    loss = ((net(batch) - batch) ** 2).mean()
                    loss.backward()
                    opt.step()
        linear = [m for m in net if isinstance(m, torch.nn.Linear)]
        self.weights_ = [m.weight.detach().numpy().astype(np.float64).copy() for m in linear]
        self.biases_ = [m.bias.detach().numpy().astype(np.float64).copy() for m in linear]

    def _score(self, X: np.ndarray) -> np.ndarray:
        Z = self._z(X).astype(np.float64)
        h = Z
        n = len(self.weights_)
        for i, (W, b) in enumerate(zip(self.weights_, self.biases_, strict=True)):
            h = h @ W.T + b
            if i < n - 1:  # every layer but the output has a ReLU
                h = np.maximum(h, 0.0)
        return np.asarray(((h - Z) ** 2).mean(axis=1))

    def _state(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for i, (W, b) in enumerate(zip(self.weights_, self.biases_, strict=True)):
            out[f"W{i}"] = W
            out[f"b{i}"] = b
        return out

    def _set_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        n = sum(1 for k in arrays if k.startswith("W"))
        self.weights_ = [np.asarray(arrays[f"W{i}"]) for i in range(n)]
        self.biases_ = [np.asarray(arrays[f"b{i}"]) for i in range(n)]
