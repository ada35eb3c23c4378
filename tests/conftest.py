"""Shared test configuration.

- Every test runs torch on one intra-op thread: the tensors here are small, and on a busy 2-core
  machine torch's default of two spin-waiting OpenMP threads makes the suite up to 10x slower
  (results do not depend on it).
- ``moment_matched``: Gaussian samples with exact empirical moments, for tests against closed forms.
"""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def moment_matched(n: int, mean: torch.Tensor, cov: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``n`` points (float64) whose empirical mean and (1/n) covariance are exactly ``mean`` and ``cov``."""
    z = torch.randn(n, mean.shape[0], generator=generator, dtype=torch.float64)
    z = z - z.mean(0)
    L = torch.linalg.cholesky(z.T @ z / n)
    z = torch.linalg.solve_triangular(L, z.T, upper=False).T
    return mean + z @ torch.linalg.cholesky(cov).T
