"""Tests of gwf_tutorial._validation: each check accepts good input unchanged and rejects bad input with
a ValueError / TypeError whose message names the argument."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gwf_tutorial._validation import (
    as_tensor,
    check_finite,
    check_int,
    check_mean_cov,
    check_nonnegative,
    check_positive,
    check_same_dim,
    check_samples,
    check_spd,
)

F64 = torch.float64


def test_as_tensor_converts_and_keeps_dtypes():
    x64 = torch.zeros(2, 3, dtype=F64)
    assert as_tensor(x64, "x") is x64  # a float tensor passes through untouched
    assert as_tensor([[1, 2]], "x").dtype == torch.get_default_dtype()  # integers -> default float
    assert as_tensor(np.ones((2, 2)), "x").dtype == F64  # numpy float64 stays float64
    assert as_tensor([1.0], "x", dtype=F64).dtype == F64
    with pytest.raises(TypeError, match="^pts must be a tensor or array-like"):
        as_tensor("abc", "pts")
    with pytest.raises(TypeError, match="^mask must hold real floating-point numbers"):
        as_tensor(torch.tensor([True, False]), "mask")
    with pytest.raises(TypeError, match="^z must hold real"):
        as_tensor(torch.tensor([1 + 2j]), "z")


def test_check_finite():
    t = torch.tensor([1.0, 2.0])
    assert check_finite(t, "t") is t
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="^grid contains NaN or infinite values"):
            check_finite(torch.tensor([1.0, bad]), "grid")


def test_check_samples():
    x = torch.randn(5, 3, dtype=F64)
    assert check_samples(x, "x") is x
    assert check_samples([[0.0, 1.0]], "y").shape == (1, 2)
    with pytest.raises(ValueError, match=r"^particles must have shape \(n, d\), got shape \(5,\)"):
        check_samples(torch.zeros(5), "particles")
    with pytest.raises(ValueError, match=r"^particles must have shape \(n, d\), got shape \(2, 3, 4\)"):
        check_samples(torch.zeros(2, 3, 4), "particles")
    with pytest.raises(ValueError, match=r"^y must hold at least 2 sample\(s\), got 1"):
        check_samples(torch.zeros(1, 2), "y", min_n=2)
    with pytest.raises(ValueError, match="^y must hold at least 1 sample"):
        check_samples(torch.zeros(0, 2), "y")
    with pytest.raises(ValueError, match="^y must have at least one dimension"):
        check_samples(torch.zeros(3, 0), "y")
    with pytest.raises(ValueError, match=r"^x must have 2 columns \(dimension d=2\), got 3"):
        check_samples(x, "x", dim=2)
    bad = x.clone()
    bad[2, 1] = math.nan
    with pytest.raises(ValueError, match="^x contains NaN"):
        check_samples(bad, "x")
    with pytest.raises(TypeError, match="^x must hold real"):
        check_samples(torch.ones(2, 2, dtype=torch.bool), "x")


def test_check_same_dim():
    x, y = torch.zeros(3, 2), torch.zeros(4, 2)
    check_same_dim(x, y)  # no error
    with pytest.raises(ValueError, match="^a and b must have the same dimension d, got 2 and 3"):
        check_same_dim(x, torch.zeros(4, 3), "a", "b")
    with pytest.raises(TypeError, match="^x and y must have the same dtype"):
        check_same_dim(x, y.double())
    if torch.device("meta") != x.device:
        with pytest.raises(ValueError, match="^x and y must be on the same device"):
            check_same_dim(x, torch.zeros(4, 2, device="meta"))


@pytest.mark.parametrize("value", [1, 0.5, 1e-300, torch.tensor(2.0), np.float32(3.0)])
def test_check_positive_accepts(value):
    out = check_positive(value, "tau")
    assert isinstance(out, float) and out == float(value)


def test_check_positive_rejects():
    for bad in (0, 0.0, -1e-12, -3):
        with pytest.raises(ValueError, match="^step_size must be positive"):
            check_positive(bad, "step_size")
    with pytest.raises(ValueError, match="^eps must be a number, got NaN"):
        check_positive(math.nan, "eps")
    with pytest.raises(ValueError, match="^eps must be finite"):
        check_positive(math.inf, "eps")
    assert check_positive(math.inf, "eps", allow_inf=True) == math.inf
    with pytest.raises(TypeError, match="^bandwidth must be a real number, got str"):
        check_positive("1", "bandwidth")
    with pytest.raises(TypeError, match="^bandwidth must be a real number, got bool"):
        check_positive(True, "bandwidth")
    with pytest.raises(ValueError, match=r"^bandwidth must be a scalar, got shape \(2,\)"):
        check_positive(torch.ones(2), "bandwidth")


def test_check_nonnegative():
    assert check_nonnegative(0, "noise") == 0.0
    assert check_nonnegative(0.3, "noise") == 0.3
    for bad in (-0.1, math.inf):
        with pytest.raises(ValueError, match="^noise must be a finite number >= 0"):
            check_nonnegative(bad, "noise")
    with pytest.raises(ValueError, match="^noise must be a number, got NaN"):
        check_nonnegative(math.nan, "noise")


def test_check_int():
    assert check_int(5, "n") == 5
    assert check_int(3.0, "n") == 3 and isinstance(check_int(3.0, "n"), int)
    assert check_int(np.int64(7), "n") == 7
    assert check_int(0, "seed", min_value=0) == 0
    with pytest.raises(ValueError, match="^n_steps must be an integer >= 1, got 0"):
        check_int(0, "n_steps")
    with pytest.raises(ValueError, match="^n must be an integer >= 2, got 1"):
        check_int(1, "n", min_value=2)
    with pytest.raises(TypeError, match="^n_particles must be an integer, got 2.5"):
        check_int(2.5, "n_particles")
    with pytest.raises(TypeError, match="^n_particles must be an integer, got True"):
        check_int(True, "n_particles")
    with pytest.raises(TypeError, match="^n_particles must be an integer"):
        check_int("3", "n_particles")


def test_check_spd():
    S = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=F64)
    assert check_spd(S, "cov") is S
    batch = torch.stack([S, 3 * torch.eye(2, dtype=F64)])
    assert check_spd(batch, "covs").shape == (2, 2, 2)
    with pytest.raises(ValueError, match=r"^cov must be a square matrix of shape \(\.\.\., d, d\)"):
        check_spd(torch.ones(2, 3), "cov")
    with pytest.raises(ValueError, match=r"^cov must be a square matrix"):
        check_spd(torch.ones(3), "cov")
    with pytest.raises(ValueError, match="^cov must be 3x3, got"):
        check_spd(S, "cov", dim=3)
    with pytest.raises(ValueError, match="^cov must be symmetric"):
        check_spd(torch.tensor([[1.0, 0.2], [0.0, 1.0]]), "cov")
    with pytest.raises(ValueError, match="^Sigma must be positive definite, got smallest eigenvalue -1"):
        check_spd(torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=F64), "Sigma")
    with pytest.raises(ValueError, match="^Sigma must be positive definite"):
        check_spd(torch.zeros(2, 2), "Sigma")  # semi-definite is not enough
    with pytest.raises(ValueError, match="^covs must be positive definite"):
        check_spd(torch.stack([S, -S]), "covs")  # one bad matrix in a batch
    with pytest.raises(ValueError, match="^cov contains NaN"):
        check_spd(torch.tensor([[1.0, math.nan], [math.nan, 1.0]]), "cov")


def test_check_mean_cov():
    m, S = check_mean_cov([0.0, 1.0], torch.eye(2, dtype=F64))
    assert m.dtype == S.dtype == F64  # promoted to the common dtype
    m32, S32 = check_mean_cov(torch.zeros(2), torch.eye(2))
    assert m32.dtype == S32.dtype == torch.float32
    with pytest.raises(ValueError, match="^mu must have shape"):
        check_mean_cov(torch.tensor(1.0), torch.eye(1), "mu", "Sigma")
    with pytest.raises(ValueError, match="^Sigma must be 3x3"):
        check_mean_cov(torch.zeros(3), torch.eye(2), "mu", "Sigma")
    with pytest.raises(ValueError, match="^mu contains NaN"):
        check_mean_cov(torch.tensor([0.0, math.nan]), torch.eye(2), "mu", "Sigma")
    with pytest.raises(ValueError, match="^Sigma must be positive definite"):
        check_mean_cov(torch.zeros(2), -torch.eye(2), "mu", "Sigma")


def test_check_betas():
    from gwf_tutorial._validation import check_betas

    assert check_betas([0.5, 0.9]) == (0.5, 0.9)
    for bad in [(0.5,), (0.5, 1.0), (-0.1, 0.9), "ab", (True, 0.9), None]:
        with pytest.raises(ValueError, match="betas"):
            check_betas(bad)


def test_magnitude_limit_and_one_sync(monkeypatch):
    """Entries whose squares overflow the dtype are refused (float32: beyond sqrt(max)/100 = 1.8e17);
    finiteness and magnitude cost one host synchronisation together."""
    from gwf_tutorial._validation import max_abs

    assert max_abs(torch.float32) == pytest.approx(math.sqrt(torch.finfo(torch.float32).max) / 100)
    check_finite(torch.tensor([1e17, -1e17]), "x")
    check_finite(torch.tensor([1e30], dtype=F64), "x")
    with pytest.raises(ValueError, match=r"^x holds values up to 1e\+18, too large for torch.float32 .*64"):
        check_finite(torch.tensor([0.0, -1e18]), "x")
    with pytest.raises(ValueError, match=r"^x holds values up to 1e\+200, too large for torch.float64.*it$"):
        check_finite(torch.tensor([1e200], dtype=F64), "x")
    with pytest.raises(ValueError, match="contains NaN or infinite"):
        check_finite(torch.tensor([1e30, math.nan]), "x")  # NaN wins over the magnitude
    assert check_finite(torch.zeros(0, 2), "x").shape == (0, 2)
    calls = [0]
    orig = torch.Tensor.__float__

    def counting(self):
        calls[0] += 1
        return orig(self)

    monkeypatch.setattr(torch.Tensor, "__float__", counting)
    check_samples(torch.ones(100, 3), "x")
    assert calls[0] == 1


def test_low_precision_refused_integers_cast():
    for dt in (torch.float16, torch.bfloat16):
        with pytest.raises(TypeError, match=rf"^points must be float32 or float64, got {dt}.*points\.float"):
            check_samples(torch.zeros(3, 2, dtype=dt), "points")
        with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast manages its own precision
            assert as_tensor(torch.zeros(3, 2, dtype=torch.bfloat16), "x").dtype == torch.bfloat16
    ints = torch.arange(6).reshape(3, 2)
    assert torch.equal(check_samples(ints, "x"), ints.to(torch.get_default_dtype()))


def test_check_seed():
    from gwf_tutorial._validation import check_seed

    assert check_seed(0) == 0 and check_seed(np.int64(7)) == 7 and type(check_seed(np.int64(7))) is int
    for bad in (2.0, 2.5, True, "3", None):
        with pytest.raises(TypeError, match=r"^seed must be a non-negative integer, got"):
            check_seed(bad)
    with pytest.raises(ValueError, match="rng_seed must be a non-negative integer, got -1"):
        check_seed(-1, "rng_seed")


def test_check_dtype_like():
    from gwf_tutorial._validation import check_dtype_like

    w = torch.zeros(2, 2)
    check_dtype_like(torch.ones(3, 2), w, "x")
    with pytest.raises(TypeError, match=r"^z must have dtype torch.float32 .* got torch.int64; cast it"):
        check_dtype_like(torch.ones(3, 2, dtype=torch.int64), w, "z")


def test_check_spd_semidefinite_and_same_dim_without_dtype():
    from gwf_tutorial._validation import check_same_dim

    P = torch.tensor([[1.0, 1.0], [1.0, 1.0]], dtype=F64)  # rank 1: PSD, not PD
    assert check_spd(P, "S", semidefinite=True) is P
    with pytest.raises(ValueError, match="^S must be positive definite"):
        check_spd(P, "S")
    with pytest.raises(ValueError, match="^S must be positive semi-definite, got smallest eigenvalue -1"):
        check_spd(-torch.eye(2, dtype=F64), "S", semidefinite=True)
    assert check_spd(torch.zeros(0, 0), "S").shape == (0, 0)  # empty: nothing to check
    check_same_dim(torch.zeros(2, 3), torch.zeros(3, dtype=F64), "m1", "m2", same_dtype=False)
    with pytest.raises(TypeError, match="same dtype"):
        check_same_dim(torch.zeros(2, 3), torch.zeros(3, dtype=F64), "m1", "m2")


def test_check_callable_choice_bool():
    from gwf_tutorial._validation import check_bool, check_callable, check_choice

    check_callable(len, "fn")
    check_callable(None, "fn", optional=True)
    with pytest.raises(TypeError, match="^fn must be callable, got int"):
        check_callable(3, "fn")
    with pytest.raises(TypeError, match="^fn must be callable or None, got str"):
        check_callable("f", "fn", optional=True)
    assert check_choice("kl", "divergence", {"kl": 1, "js": 2}) == "kl"
    with pytest.raises(ValueError, match=r"^divergence must be one of \['js', 'kl'\], got 'tv'"):
        check_choice("tv", "divergence", {"kl": 1, "js": 2})
    with pytest.raises(ValueError, match="^divergence must be one of"):
        check_choice(1, "divergence", ("kl",))
    assert check_bool(False, "flag") is False
    for bad in (0, 1, torch.tensor(True), "yes"):
        with pytest.raises(TypeError, match="^flag must be a bool"):
            check_bool(bad, "flag")


def test_check_interval():
    from gwf_tutorial._validation import check_interval

    assert check_interval(0.5, "p") == 0.5
    assert check_interval(np.float32(0.25), "p") == 0.25 and check_interval(torch.tensor(0.75), "p") == 0.75
    assert check_interval(0, "decay", closed="left") == 0.0
    assert check_interval(1, "share", closed="right") == 1.0
    assert check_interval(-2.0, "x", -2.0, 3.0, closed="both") == -2.0
    for value, closed, msg in ((0.0, "", r"\(0, 1\), got 0.0"), (1.0, "left", r"\[0, 1\), got 1.0"),
                               (0.0, "right", r"\(0, 1\], got 0.0"), (1.5, "both", r"\[0, 1\], got 1.5")):
        with pytest.raises(ValueError, match=rf"^p must be in {msg}$"):
            check_interval(value, "p", closed=closed)
    with pytest.raises(ValueError, match="^p must be a number, got NaN"):
        check_interval(math.nan, "p")
    with pytest.raises(TypeError, match="^p must be a real number, got bool"):
        check_interval(True, "p")


def test_check_dtype_and_generator():
    from gwf_tutorial._validation import check_dtype, check_generator

    assert check_dtype(torch.float64) is torch.float64
    for bad in (torch.int64, "float32", None):
        with pytest.raises(TypeError, match="^dtype must be a floating torch.dtype"):
            check_dtype(bad)
    g = torch.Generator()
    assert check_generator(g) is g and check_generator(None) is None
    with pytest.raises(TypeError, match="^generator must be a torch.Generator or None, got int"):
        check_generator(0)
