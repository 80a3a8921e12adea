"""OFA's accuracy-predictor recipe (Cai et al., ICLR 2020), kept as a reference model.

OFA predicts accuracy with an MLP of three hidden layers of 400 ReLU units on its one-hot architecture
encoding (resolution, per-block kernel, per-block expansion; zeros for skipped blocks), a bias-free
output layer plus a fixed base accuracy (the training mean), trained with Adam on the MSE. OFA fits it on
16,000 measured subnets; NAT's point is that with the few hundred an archive holds, a model chosen per
task by cross-validation does better. This class reproduces the recipe so the benchmark can show that.

Differences from OFA's code: targets are standardised by the `Surrogate` base class (so the "base
accuracy" is the mean, which is what OFA uses, and the output is scaled), a one-hot width is appended for
spaces with several width multipliers, and training is full-batch for archives up to ``batch_size``.
"""

from __future__ import annotations

import numpy as np

from nat.space import SearchSpace
from nat.surrogates.base import Surrogate, register_surrogate


@register_surrogate("ofa_mlp")
class OFAMLP(Surrogate):
    """OFA's predictor: MLP ``n_layers`` x ``hidden`` ReLU, Adam/MSE, on OFA's one-hot encoding (torch)."""

    encoding = "ofa"

    def __init__(
        self,
        space: SearchSpace | str,
        seed: int = 0,
        *,
        hidden: int = 400,
        n_layers: int = 3,
        epochs: int = 300,
        lr: float = 1e-3,
        batch_size: int = 256,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(space, seed)
        self.hidden = int(hidden)
        self.n_layers = int(n_layers)
        self.epochs = int(epochs)
        self.lr = float(lr)
        self.batch_size = int(batch_size)
        self.weight_decay = float(weight_decay)
        self._net = None

    def fit(self, genomes: np.ndarray | list, y: np.ndarray | list) -> OFAMLP:
        import torch  # noqa: F401 - imported before fitting so `single_threaded` also limits torch

        super().fit(genomes, y)
        return self

    def _build(self, n_in: int):  # torch is imported lazily
        import torch.nn as nn

        layers: list[nn.Module] = []
        for i in range(self.n_layers):
            layers += [nn.Linear(n_in if i == 0 else self.hidden, self.hidden), nn.ReLU()]
        layers.append(nn.Linear(self.hidden, 1, bias=False))
        return nn.Sequential(*layers)

    def _fit(self, features: np.ndarray, z: np.ndarray) -> None:
        import torch

        # a private RNG stream: the same seed gives the same model and the caller's torch RNG is untouched
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            net = self._build(features.shape[1])
            x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
            y = torch.from_numpy(z.astype(np.float32))
            opt = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
            gen = torch.Generator().manual_seed(self.seed)
            n = len(x)
            net.train()
            for _ in range(self.epochs):
                order = torch.randperm(n, generator=gen)
                for start in range(0, n, self.batch_size):
                    idx = order[start : start + self.batch_size]
                    opt.zero_grad(set_to_none=True)
                    loss = torch.nn.functional.mse_loss(net(x[idx]).squeeze(1), y[idx])
                    loss.backward()
                    opt.step()
        net.eval()
        self._net = net

    def _predict(self, features: np.ndarray) -> np.ndarray:
        import torch

        assert self._net is not None
        with torch.no_grad():
            out = self._net(torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)))
        return out.squeeze(1).numpy().astype(np.float64)
