import math

import pytest
import torch

from srgrpo.metrics import (
    condition_number,
    effective_rank,
    pca_dimension,
    squared_singular_values,
    stable_rank,
    windowed_stable_rank,
)


def reference_sigma(h: torch.Tensor) -> torch.Tensor:
    return torch.linalg.svdvals(h.double())


def ref_stable_rank(h):
    s = reference_sigma(h)
    return (s.square().sum() / s[0].square()).item()


def ref_effective_rank(h):
    s = reference_sigma(h)
    p = s / s.sum()
    p = p[p > 0]
    return math.exp(-(p * p.log()).sum().item())


def ref_condition_number(h):
    s = reference_sigma(h)
    return (s[0] / s[-1]).item()


def ref_pca_dimension(h, fraction=0.95):
    c = h.double() - h.double().mean(dim=0)
    var = torch.linalg.svdvals(c).square()
    ratio = var.cumsum(0) / var.sum()
    return int((ratio < fraction).sum().item()) + 1


def low_rank(t, d, rank, generator):
    return torch.randn(t, rank, generator=generator) @ torch.randn(rank, d, generator=generator)


SHAPES = [(7, 32), (32, 7), (50, 64), (64, 50), (128, 16)]


@pytest.mark.parametrize("shape", SHAPES)
def test_stable_rank_matches_float64_svd_on_random_matrices(shape):
    g = torch.Generator().manual_seed(sum(shape))
    for scale in (1e-3, 1.0, 1e3):
        h = torch.randn(*shape, generator=g) * scale
        got = stable_rank(h).item()  # float32 arithmetic by default
        assert got == pytest.approx(ref_stable_rank(h), rel=1e-5)


@pytest.mark.parametrize("rank", [1, 2, 5])
def test_stable_rank_exact_on_low_rank_matrices(rank):
    g = torch.Generator().manual_seed(rank)
    for t, d in [(40, 30), (30, 40)]:
        h = low_rank(t, d, rank, g)
        got = stable_rank(h).item()
        assert got == pytest.approx(ref_stable_rank(h), rel=1e-5)
        assert 1 - 1e-4 <= got <= rank + 1e-4


def test_stable_rank_of_massive_outlier_direction():
    # Real hidden states have one dominant direction; SR must still be exact near 1.
    g = torch.Generator().manual_seed(3)
    h = torch.randn(60, 48, generator=g)
    h[:, 5] += 500.0
    assert stable_rank(h).item() == pytest.approx(ref_stable_rank(h), rel=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
def test_spectrum_metrics_match_float64_svd(shape):
    g = torch.Generator().manual_seed(7 * sum(shape))
    h = torch.randn(*shape, generator=g)
    assert effective_rank(h).item() == pytest.approx(ref_effective_rank(h), rel=1e-6)
    assert condition_number(h).item() == pytest.approx(ref_condition_number(h), rel=1e-6)
    assert pca_dimension(h).item() == ref_pca_dimension(h)
    assert pca_dimension(h, fraction=0.5).item() == ref_pca_dimension(h, 0.5)
    sv = squared_singular_values(h)
    torch.testing.assert_close(sv, reference_sigma(h).square(), rtol=1e-8, atol=1e-8 * sv[0].item())


def test_spectrum_metrics_on_low_rank_matrices():
    g = torch.Generator().manual_seed(11)
    h = low_rank(40, 30, 3, g)
    assert effective_rank(h).item() == pytest.approx(ref_effective_rank(h), rel=1e-6)
    assert pca_dimension(h).item() == ref_pca_dimension(h)
    # Rank-deficient: sigma_min is 0 up to rounding, so the condition number is huge (or inf).
    assert condition_number(h).item() > 1e6


@pytest.mark.parametrize("metric", [stable_rank, effective_rank, condition_number, pca_dimension])
def test_padded_batch_gives_each_matrix_its_own_value(metric):
    """Zero padding (or garbage under the mask) leaves every matrix's score exact."""
    g = torch.Generator().manual_seed(5)
    lengths = [3, 17, 40, 9]
    d = 24
    mats = [torch.randn(n, d, generator=g) for n in lengths]
    width = max(lengths)
    batch = torch.randn(len(mats), width, d, generator=g) * 1e4  # garbage in padded rows
    batch[0, -1, 0] = float("nan")  # even NaN under the mask must not leak
    mask = torch.zeros(len(mats), width, dtype=torch.bool)
    for i, m in enumerate(mats):
        batch[i, : len(m)] = m
        mask[i, : len(m)] = True
    batched = metric(batch, mask)
    alone = torch.stack([metric(m) for m in mats])
    torch.testing.assert_close(batched.double(), alone.double(), rtol=1e-5, atol=0)

    zero_padded = torch.where(mask[..., None], batch, 0.0)
    torch.testing.assert_close(metric(zero_padded, mask).double(), alone.double(), rtol=1e-5, atol=0)


def test_bf16_input_is_computed_in_float32_or_float64():
    g = torch.Generator().manual_seed(2)
    h = torch.randn(30, 20, generator=g).bfloat16()
    assert stable_rank(h).dtype == torch.float32
    assert stable_rank(h, dtype=torch.float64).dtype == torch.float64
    assert stable_rank(h).item() == pytest.approx(ref_stable_rank(h.float()), rel=1e-4)


@pytest.mark.parametrize("metric", [stable_rank, effective_rank, condition_number, pca_dimension])
def test_nan_inf_and_zero_matrices_give_nan_without_touching_the_others(metric):
    g = torch.Generator().manual_seed(9)
    batch = torch.randn(5, 10, 8, generator=g)
    batch[0, 3, 2] = float("nan")
    batch[1, 0, 0] = float("inf")
    batch[2] = 0.0
    mask = torch.ones(5, 10, dtype=torch.bool)
    mask[3] = False  # no real rows at all
    out = metric(batch, mask)
    assert torch.isnan(out[:4]).all()
    assert out[4].item() == pytest.approx(metric(batch[4]).item(), rel=1e-6)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="shape"):
        stable_rank(torch.zeros(3))
    with pytest.raises(ValueError, match="mask"):
        stable_rank(torch.ones(2, 4, 3), torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="fraction"):
        pca_dimension(torch.ones(4, 3), fraction=1.5)


def test_sr_variants_match_their_definitions():
    g = torch.Generator().manual_seed(21)
    h = torch.randn(30, 16, generator=g) + 3.0  # a shared offset, as real hidden states have
    centred = h - h.mean(dim=0)
    assert stable_rank(h, center=True).item() == pytest.approx(ref_stable_rank(centred), rel=1e-4)
    rows = h / h.norm(dim=1, keepdim=True)
    assert stable_rank(h, normalize_rows=True).item() == pytest.approx(ref_stable_rank(rows), rel=1e-4)
    # Centring removes the offset direction, so SR rises.
    assert stable_rank(h, center=True).item() > stable_rank(h).item()


def test_variants_are_padding_invariant():
    g = torch.Generator().manual_seed(22)
    mats = [torch.randn(n, 12, generator=g) + 1.0 for n in (5, 33, 70)]
    batch = torch.zeros(3, 70, 12)
    mask = torch.zeros(3, 70, dtype=torch.bool)
    for i, m in enumerate(mats):
        batch[i, : len(m)], mask[i, : len(m)] = m, True
    for kwargs in ({"center": True}, {"normalize_rows": True}):
        alone = torch.stack([stable_rank(m, **kwargs) for m in mats])
        torch.testing.assert_close(stable_rank(batch, mask, **kwargs), alone, rtol=1e-5, atol=0)
    alone = torch.stack([windowed_stable_rank(m, window=16) for m in mats])
    torch.testing.assert_close(windowed_stable_rank(batch, mask, window=16), alone, rtol=1e-5, atol=0)


def test_windowed_stable_rank_is_the_mean_over_windows():
    g = torch.Generator().manual_seed(23)
    h = torch.randn(70, 24, generator=g)
    # windows of 16: rows 0-15, 16-31, 32-47, 48-63 and a 6-row tail (< 8 rows: dropped)
    expected = sum(ref_stable_rank(h[k : k + 16]) for k in range(0, 64, 16)) / 4
    assert windowed_stable_rank(h, window=16).item() == pytest.approx(expected, rel=1e-4)
    h2 = h[:60]  # tail of 12 rows (>= 8): kept
    expected2 = (sum(ref_stable_rank(h2[k : k + 16]) for k in range(0, 48, 16)) + ref_stable_rank(h2[48:])) / 4
    assert windowed_stable_rank(h2, window=16).item() == pytest.approx(expected2, rel=1e-4)
    short = h[:5]  # shorter than a window: one window
    assert windowed_stable_rank(short, window=16).item() == pytest.approx(ref_stable_rank(short), rel=1e-4)
    # It does not grow with length the way SR does on i.i.d. rows.
    long = torch.randn(512, 24, generator=g)
    assert windowed_stable_rank(long, window=16).item() == pytest.approx(windowed_stable_rank(long[:64], window=16).item(), rel=0.2)
    with pytest.raises(ValueError, match="window"):
        windowed_stable_rank(h, window=0)


def test_power_iteration_certifies_sigma1_and_falls_back_when_it_cannot_converge(monkeypatch):
    from srgrpo import metrics as m

    torch.manual_seed(3)
    easy = torch.randn(40, 64) + 4 * torch.randn(64)  # one dominant direction, as real hidden states have
    tied = torch.zeros(40, 64)
    tied[:20, :20] = torch.eye(20)  # sigma_1 = sigma_2 = ... = 1: power iteration cannot single one out
    tied[20:, 20:40] = torch.eye(20) * (1 + 1e-7)
    h = torch.stack([easy, tied]).double()
    reference = torch.stack([torch.linalg.svdvals(x)[0] ** 2 for x in h])
    fallbacks = []
    real = m._gram_eigenvalues
    monkeypatch.setattr(m, "_gram_eigenvalues", lambda x: (fallbacks.append(x.shape[0]), real(x))[1])
    top = m.top_squared_singular_value(h)
    assert torch.allclose(top, reference, rtol=1e-10)
    assert fallbacks == [1]  # only the tied matrix needed eigvalsh
    # The Rayleigh quotient is a lower bound on sigma_1^2 that the certified residual pins down.
    top32 = m.top_squared_singular_value(h.float()[:1])
    assert abs(top32.item() - reference[0].item()) / reference[0].item() < 2e-6
