"""The stable-rank variants studies/length/study.py weighed and did not register (Gaussian null
ratio, length adjustment, whitening), kept with the study and built on the library's math: float64
SVD references, padding and batch invariance, NaN cases, and the property each variant exists for."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

from conftest import pad_batch
from references import stable_rank as sr_ref

from srgrpo import metrics

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: studies/ is a package

from studies.length import study  # noqa: E402


def _null_ref(t: int, d: int) -> float:
    return t * d / (math.sqrt(t) + math.sqrt(d)) ** 2


def test_gaussian_null_matches_formula_and_is_symmetric():
    assert float(study.gaussian_null_stable_rank(100, 576)) == pytest.approx(_null_ref(100, 576))
    assert float(study.gaussian_null_stable_rank(576, 100)) == pytest.approx(_null_ref(100, 576))
    out = study.gaussian_null_stable_rank(torch.tensor([1, 4, 9]), 16)
    assert out.tolist() == pytest.approx([_null_ref(t, 16) for t in (1, 4, 9)])


def test_null_ratio_matches_reference(mats):
    for m in mats:
        got = float(study.stable_rank_null_ratio(m, dtype=torch.float64))
        assert got == pytest.approx(sr_ref(m) / _null_ref(m.shape[0], m.shape[1]), rel=1e-9)
        centred = m.double() - m.double().mean(0)
        if m.shape[0] > 1:
            got = float(study.stable_rank_null_ratio(m, dtype=torch.float64, center=True))
            assert got == pytest.approx(sr_ref(centred) / _null_ref(m.shape[0], m.shape[1]), rel=1e-9)


@pytest.mark.parametrize("exponent", [0.0, 0.3, 1.0])
def test_length_adjusted_matches_reference(mats, exponent):
    for m in mats:
        got = float(study.length_adjusted_stable_rank(m, dtype=torch.float64, exponent=exponent))
        assert got == pytest.approx(sr_ref(m) / m.shape[0] ** exponent, rel=1e-9)


def _whitening(d: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=torch.float64) / math.sqrt(d)
    cov = a @ a.T + 0.1 * torch.eye(d, dtype=torch.float64)
    evals, evecs = torch.linalg.eigh(cov)
    return torch.randn(d, generator=g, dtype=torch.float64), evecs @ torch.diag(evals.rsqrt()) @ evecs.T, cov


def test_whitened_matches_reference(mats):
    mean, w, _ = _whitening(16)
    for m in mats:
        z = (m.double() - mean) @ w
        got = float(study.whitened_stable_rank(m, dtype=torch.float64, mean=mean, whitener=w))
        assert got == pytest.approx(sr_ref(z), rel=1e-9)
        got = float(study.whitened_stable_rank(m, dtype=torch.float64, mean=mean, whitener=w, null_ratio=True))
        assert got == pytest.approx(sr_ref(z) / _null_ref(*m.shape), rel=1e-9)
        if m.shape[0] > 1:
            got = float(study.whitened_stable_rank(m, dtype=torch.float64, mean=mean, whitener=w, center=True))
            assert got == pytest.approx(sr_ref(z - z.mean(0)), rel=1e-9)
    # no mean / whitener: plain SR
    assert float(study.whitened_stable_rank(mats[1], dtype=torch.float64)) == pytest.approx(sr_ref(mats[1]))


def _variants(mean, w):
    f64 = torch.float64
    return {
        "null_ratio": lambda h, m: study.stable_rank_null_ratio(h, m, f64),
        "null_ratio_c": lambda h, m: study.stable_rank_null_ratio(h, m, f64, center=True),
        "adjusted": lambda h, m: study.length_adjusted_stable_rank(h, m, f64, exponent=0.4),
        "whitened": lambda h, m: study.whitened_stable_rank(h, m, f64, mean=mean, whitener=w, null_ratio=True),
        "whitened_c": lambda h, m: study.whitened_stable_rank(h, m, f64, mean=mean, whitener=w, center=True),
    }


def test_padded_batch_equals_one_by_one(mats):
    mean, w, _ = _whitening(16)
    hb, hm = pad_batch(mats, front=3)
    for name, fn in _variants(mean, w).items():
        batch = fn(hb, hm)
        assert batch.shape == (len(mats),)
        for i, m in enumerate(mats):
            assert float(batch[i]) == pytest.approx(float(fn(m, None)), rel=1e-7, nan_ok=True), name


def test_nan_cases(mats):
    mean, w, _ = _whitening(16)
    good = mats[1]
    bad = good.clone()
    bad[2, 3] = float("nan")
    hb, hm = pad_batch([good, torch.zeros_like(good), bad])
    none_real = hm.clone()
    none_real[0] = False
    for name, fn in _variants(mean, w).items():
        out = fn(hb, hm)
        assert torch.isfinite(out[0]), name
        assert torch.isnan(out[1]) and torch.isnan(out[2]), name
        assert torch.isnan(fn(hb, none_real)[0]), name
    with pytest.raises(ValueError):
        study.whitened_stable_rank(torch.randn(4, 8), torch.ones(5, dtype=torch.bool))


def test_the_studys_base_metrics_match_svd_references(mats):
    """What the study tabulates per item, against float64 SVD done here: SR, centred SR, whitened
    SR and SR after projecting out the prompt's top-k right singular vectors (the sink row left out)."""
    mean, w, _ = _whitening(16)
    r, p = mats[2].double(), torch.randn(9, 16, dtype=torch.float64)
    got = study._base_metrics("final_norm", r, None, p, (mean, w))
    assert got["sr"] == pytest.approx(sr_ref(r), rel=1e-9)
    assert got["sr_c"] == pytest.approx(sr_ref(r - r.mean(0)), rel=1e-9)
    assert got["sr_w"] == pytest.approx(sr_ref((r - mean) @ w), rel=1e-9)
    _, _, vh = torch.linalg.svd(p[1:], full_matrices=False)
    for k in study.PROMPT_KS:
        v = vh[: min(k, 8)].T
        assert got[f"sr_p{k}"] == pytest.approx(sr_ref(r - (r @ v) @ v.T), rel=1e-7), k
    assert study._gauss_null([100]).tolist() == pytest.approx([_null_ref(100, study.D_MODEL)])


def test_purpose_null_ratio_does_not_grow_with_length():
    """On i.i.d. matrices SR grows ~T-fold from T = 8 to T = 512, the null ratio stays ~1."""
    g = torch.Generator().manual_seed(0)
    d = 128
    lengths = [8, 32, 128, 512]
    sr, ratio = [], []
    for t in lengths:
        h = torch.randn(6, t, d, generator=g)
        sr.append(float(metrics.stable_rank(h, dtype=torch.float64).mean()))
        ratio.append(float(study.stable_rank_null_ratio(h, dtype=torch.float64).mean()))
    assert sr[-1] > 5 * sr[0]
    assert all(0.8 < r < 1.25 for r in ratio), ratio
    assert ratio[-1] < 1.1 * ratio[0]


def test_purpose_whitening_undoes_a_models_anisotropy():
    """Rows drawn i.i.d. from an anisotropic Gaussian with a large mean have SR near 1 at every T
    (one direction dominates); whitened with that distribution's mean and Sigma^-1/2 they look like
    the Gaussian null (ratio ~1) whatever T."""
    d = 64
    mean, w, cov = _whitening(d, seed=5)
    mean = mean * 10
    chol = torch.linalg.cholesky(cov)
    g = torch.Generator().manual_seed(1)
    for t in (16, 64, 256):
        h = mean + torch.randn(4, t, d, generator=g, dtype=torch.float64) @ chol.T
        assert float(metrics.stable_rank(h, dtype=torch.float64).max()) < 1.5
        ratio = study.whitened_stable_rank(h, None, torch.float64, mean=mean, whitener=w, null_ratio=True)
        assert ratio.min() > 0.8 and ratio.max() < 1.25, (t, ratio)


def test_purpose_length_adjusted_cancels_a_power_law():
    """SR of i.i.d. matrices grows roughly like T^beta; dividing by T^beta, with beta fitted on other
    draws (as srgrpo.length_robust fits it on neutral text), flattens it."""
    g = torch.Generator().manual_seed(2)
    d = 256

    def draw(t):
        return torch.randn(8, t, d, generator=g, dtype=torch.float64)

    lengths = torch.tensor([16.0, 32.0, 64.0, 128.0])
    fit = torch.stack([metrics.stable_rank(draw(int(t)), dtype=torch.float64).log().mean() for t in lengths])
    x = lengths.log().double()
    beta = float(((x - x.mean()) * (fit - fit.mean())).sum() / ((x - x.mean()) ** 2).sum())
    assert beta > 0.5
    adj = [float(study.length_adjusted_stable_rank(draw(int(t)), dtype=torch.float64, exponent=beta).mean())
           for t in lengths]
    raw = [float(metrics.stable_rank(draw(int(t)), dtype=torch.float64).mean()) for t in lengths]
    assert raw[-1] / raw[0] > 2
    assert 0.75 < adj[-1] / adj[0] < 1.33
