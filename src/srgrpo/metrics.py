"""Geometric scores of a hidden-state matrix H (tokens x dims): pure tensor math, no model.

Each function takes `hidden`, one (T, d) matrix or a padded batch (B, T, d), and an optional boolean
`mask` ((T,) or (B, T)) marking the real rows. It returns a scalar for one matrix, a (B,) tensor for a
batch. Masked rows are set to zero; a zero row adds only a zero singular value, so a padded batch
gives exactly the values of its matrices taken one by one.

Stable rank needs only ||H||_F^2 (a sum of squares) and sigma_1^2, the top eigenvalue of H^T H:
`top_squared_singular_value` finds it for a whole batch at once by power iteration on H (no Gram
matrix, no decomposition, no host synchronisation inside a round), stops when every matrix's
residual certifies its eigenvalue to `rtol`, and hands any matrix that has not converged to
`eigvalsh`. The features that need the whole spectrum (effective rank, condition number, PCA
dimension) take the eigenvalues of the smaller Gram matrix (T x T or d x d) with `eigvalsh`.
Values are computed in `dtype` whatever the dtype of `hidden` (bf16 hidden states are upcast first).

Defined values: a matrix with a NaN or inf among its real rows, or one that is all zeros (no real
rows included), scores NaN. A matrix with exactly one real (non-zero) row has SR exactly 1. The scorer turns that into a warning naming the pair.
"""

from __future__ import annotations

import torch

__all__ = [
    "stable_rank",
    "windowed_stable_rank",
    "effective_rank",
    "condition_number",
    "pca_dimension",
    "squared_singular_values",
    "top_squared_singular_value",
    "prompt_projected_stable_rank",
]

# Relative residual ||H^T H v - lambda v|| / lambda at which power iteration stops. For a symmetric
# matrix the residual bounds the distance from lambda to an eigenvalue, so this certifies sigma_1^2
# (and SR) to this relative accuracy; the true error is far smaller (quadratic in the residual).
POWER_RTOL = {torch.float32: 2e-6, torch.float64: 1e-12}
POWER_ROUND = 6  # iterations between convergence checks (one host synchronisation per check)
POWER_MAX_ITER = 60


def _prepare(hidden: torch.Tensor, mask: torch.Tensor | None, dtype: torch.dtype):
    """Upcast, zero the masked rows, and zero whole matrices that hold NaN/inf (so that `eigvalsh`
    never sees them). Returns (h (B,T,d), row mask (B,T), valid (B,) bool, squeeze flag)."""
    if hidden.dim() not in (2, 3):
        raise ValueError(f"hidden must be (T, d) or (B, T, d), got shape {tuple(hidden.shape)}")
    single = hidden.dim() == 2
    if single:
        hidden = hidden.unsqueeze(0)
        mask = None if mask is None else mask.unsqueeze(0)
    if mask is None:
        mask = torch.ones(hidden.shape[:2], dtype=torch.bool, device=hidden.device)
    elif mask.shape != hidden.shape[:2]:
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match hidden {tuple(hidden.shape)}")
    mask = mask.to(torch.bool)
    h = torch.where(mask.unsqueeze(-1), hidden.to(dtype), 0.0)
    finite = torch.isfinite(h).flatten(1).all(dim=1)
    h = torch.where(finite[:, None, None], h, 0.0)
    nonzero = h.flatten(1).abs().amax(dim=1) > 0
    return h, mask, finite & nonzero, single


def _finish(values: torch.Tensor, valid: torch.Tensor, single: bool) -> torch.Tensor:
    values = torch.where(valid, values, torch.nan)
    return values[0] if single else values


def _gram_eigenvalues(h: torch.Tensor) -> torch.Tensor:
    """Eigenvalues (= squared singular values of h), descending, of the smaller Gram matrix."""
    t, d = h.shape[-2:]
    gram = h @ h.mT if t <= d else h.mT @ h
    eig = torch.linalg.eigvalsh(gram)  # ascending
    return eig.flip(-1).clamp_min(0.0)


def _gram_times(h: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """H^T H v for each matrix of the batch, as two mat-vecs that both read H in its own layout
    ((H v)^T H rather than H^T (H v): a transposed view would take a slow strided path)."""
    return ((h @ v[..., None]).mT @ h).squeeze(1)


def top_squared_singular_value(h: torch.Tensor, rtol: float | None = None, max_iter: int = POWER_MAX_ITER) -> torch.Tensor:
    """sigma_1^2 of each (T, d) matrix of the batch `h` (B, T, d), already upcast and masked.

    Power iteration v <- H^T H v / ||.|| works on H directly (two batched mat-vecs per step), so it
    costs O(T d) per step where a Gram matrix would cost O(T^2 d) before any decomposition. The
    start vector is the largest row plus the rows' sum (both lean towards the dominant direction of
    real hidden states), plus a small fixed vector so no matrix starts orthogonal to its top
    singular vector. The Rayleigh quotient of a unit v, ||H v||^2, never exceeds sigma_1^2; the
    iteration stops once every matrix has ||H^T H v - lambda v|| <= rtol * lambda. Matrices still
    unconverged after `max_iter` steps (nearly equal top singular values) fall back to `eigvalsh`.
    """
    b, t, d = h.shape
    if b == 0:
        return h.new_zeros(0)
    rtol = POWER_RTOL.get(h.dtype, 1e-6) if rtol is None else rtol
    norms = h.square().sum(-1)  # (B, T)
    largest = h.gather(1, norms.argmax(1)[:, None, None].expand(-1, 1, d)).squeeze(1)
    v = largest + h.sum(1)
    generator = torch.Generator(device="cpu").manual_seed(0)
    jitter = torch.rand(d, generator=generator, dtype=torch.float64).to(device=h.device, dtype=h.dtype) - 0.5
    v = v / v.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(h.dtype).tiny)
    v = v + 1e-3 * jitter / jitter.norm()
    converged = torch.zeros(b, dtype=torch.bool, device=h.device)
    lam = torch.zeros(b, dtype=h.dtype, device=h.device)
    steps = 0
    while steps < max_iter:
        for _ in range(POWER_ROUND):
            v = v / v.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(h.dtype).tiny)
            v = _gram_times(h, v)
        steps += POWER_ROUND
        # Residual check on the normalised iterate: lambda = ||H u||^2, r = H^T H u - lambda u.
        u = v / v.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(h.dtype).tiny)
        hu = (h @ u[..., None]).squeeze(-1)
        lam = hu.square().sum(-1)
        residual = ((hu[:, None, :] @ h).squeeze(1) - lam[:, None] * u).norm(dim=-1)
        converged = residual <= rtol * lam
        if bool(converged.all()):  # the one host synchronisation of a round
            return lam
    stuck = (~converged).nonzero().squeeze(1)
    lam = lam.clone()
    lam[stuck] = _gram_eigenvalues(h[stuck])[..., 0]
    return lam


def squared_singular_values(
    hidden: torch.Tensor, mask: torch.Tensor | None = None, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """sigma_i^2 of each matrix, descending, min(T, d) of them (padded rows add zeros)."""
    h, _, valid, single = _prepare(hidden, mask, dtype)
    eig = torch.where(valid[:, None], _gram_eigenvalues(h), torch.nan)
    return eig[0] if single else eig


def _centre_rows(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Subtract the mean of the real rows; padded rows stay zero."""
    n = mask.sum(dim=1).clamp_min(1).to(h.dtype)
    mean = h.sum(dim=1) / n[:, None]
    return torch.where(mask.unsqueeze(-1), h - mean[:, None, :], 0.0)


def stable_rank(
    hidden: torch.Tensor,
    mask: torch.Tensor | None = None,
    dtype: torch.dtype = torch.float32,
    center: bool = False,
    normalize_rows: bool = False,
) -> torch.Tensor:
    """SR(H) = ||H||_F^2 / ||H||_2^2 = sum sigma_i^2 / sigma_1^2, in [1, rank H].

    The paper's SR uses H as it is. Two variants for studying what SR measures:
    `center` subtracts the mean token vector first (removes the shared direction that dominates
    sigma_1 in real hidden states); `normalize_rows` scales each token vector to unit norm first
    (every token weighs the same, whatever its activation norm).
    """
    h, mask, valid, single = _prepare(hidden, mask, dtype)
    if normalize_rows:
        h = h / h.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(dtype).tiny)
    if center:
        h = _centre_rows(h, mask)
        valid = valid & (h.flatten(1).abs().amax(dim=1) > 0)
    frobenius_sq = h.square().sum(dim=(-2, -1))
    top = top_squared_singular_value(h)
    sr = frobenius_sq / torch.where(valid, top, 1.0)
    # One real row is a rank-1 matrix: its SR is exactly 1, not 1 give or take the power
    # iteration's rounding (short answers must tie exactly, as RewardBench 2's best-of-4 assumes).
    sr = torch.where(mask.sum(dim=1) == 1, torch.ones_like(sr), sr)
    return _finish(sr, valid, single)


def windowed_stable_rank(
    hidden: torch.Tensor,
    mask: torch.Tensor | None = None,
    dtype: torch.dtype = torch.float32,
    window: int = 64,
) -> torch.Tensor:
    """Mean SR over consecutive windows of `window` real rows, which no longer grows with length.

    SR is bounded by the number of rows, so on long responses it partly measures length. Windows
    start at the first real row; a final partial window counts only if it holds at least half a
    window (a short tail has a small SR for the same reason), and a matrix shorter than one window
    is a single window.
    """
    if window < 1:
        raise ValueError(f"window must be positive, got {window}")
    h, mask, valid, single = _prepare(hidden, mask, dtype)
    b, t, d = h.shape
    # Real rows are the leading rows of each matrix in our batches, but do not rely on it: pack them.
    lengths = mask.sum(dim=1)
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)
    packed = h.gather(1, order[..., None].expand(-1, -1, d))
    n_windows = max(1, -(-t // window))
    padded = torch.zeros(b, n_windows * window, d, dtype=h.dtype, device=h.device)
    padded[:, :t] = packed
    windows = padded.view(b * n_windows, window, d)
    starts = torch.arange(n_windows, device=h.device) * window
    rows_in = (lengths[:, None] - starts[None, :]).clamp(0, window)  # (b, n_windows)
    keep = (rows_in >= (window + 1) // 2) | ((starts[None, :] == 0) & (rows_in > 0))
    sr = stable_rank(windows, None, dtype).view(b, n_windows)
    keep = keep & torch.isfinite(sr)
    mean = torch.where(keep, sr, 0.0).sum(dim=1) / keep.sum(dim=1).clamp_min(1)
    return _finish(mean, valid & keep.any(dim=1), single)


def effective_rank(
    hidden: torch.Tensor, mask: torch.Tensor | None = None, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """exp of the Shannon entropy of sigma_i / sum sigma (Roy & Vetterli's effective rank)."""
    h, _, valid, single = _prepare(hidden, mask, dtype)
    sigma = _gram_eigenvalues(h).sqrt()
    p = sigma / sigma.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(dtype).tiny)
    entropy = -torch.special.xlogy(p, p).sum(dim=-1)
    return _finish(entropy.exp(), valid, single)


def condition_number(
    hidden: torch.Tensor, mask: torch.Tensor | None = None, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """sigma_1 / sigma_k with k = min(real rows, d): inf when H is rank-deficient.

    Singular values come from the Gram matrix, so values beyond about 1/sqrt(eps) (1e7 in float64)
    only say "ill-conditioned"; they are not exact digits.
    """
    h, mask, valid, single = _prepare(hidden, mask, dtype)
    sigma = _gram_eigenvalues(h).sqrt()
    k = mask.sum(dim=1).clamp(max=h.shape[-1]).clamp_min(1)
    smallest = sigma.gather(1, (k - 1).unsqueeze(1).clamp(max=sigma.shape[-1] - 1)).squeeze(1)
    return _finish(sigma[..., 0] / smallest, valid, single)


def pca_dimension(
    hidden: torch.Tensor,
    mask: torch.Tensor | None = None,
    fraction: float = 0.95,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Number of principal components (rows centred, as PCA does) that explain `fraction` of the
    variance. Returned as a float tensor so that NaN can mark a matrix that cannot be scored."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    h, mask, valid, single = _prepare(hidden, mask, dtype)
    eig = _gram_eigenvalues(_centre_rows(h, mask))
    total = eig.sum(dim=-1, keepdim=True)
    explained = eig.cumsum(dim=-1) / total.clamp_min(torch.finfo(dtype).tiny)
    dims = (explained < fraction).sum(dim=-1).to(dtype) + 1
    return _finish(dims, valid & (total.squeeze(-1) > 0), single)


# ----------------------------------------------------------------------------------------------
# The length-robust variant a feature uses. SR of a T x d matrix is at most min(T, d)
# and, on real hidden states, grows with T, so longer responses win for being longer. Pure and
# batched like the ones above: (B, T, d) + (B, T) mask -> (B,), exact under zero-padded rows, NaN
# for an unscorable matrix. The other variants the study weighed (Gaussian null ratio, length
# adjustment alone, whitening) live in studies/length/study.py, built on these.

def _real_rows(mask: torch.Tensor) -> torch.Tensor:
    return mask.sum(dim=1)


def prompt_projected_stable_rank(
    hidden: torch.Tensor,
    mask: torch.Tensor | None,
    prompt_hidden: torch.Tensor,
    prompt_mask: torch.Tensor | None = None,
    dtype: torch.dtype = torch.float32,
    k: int = 1,
    length_exponent: float = 0.0,
) -> torch.Tensor:
    """SR of the response's states after projecting out the top-k right singular directions of the
    prompt's states: the part of the response's spectrum the prompt does not already span. k = 1
    removes the dominant shared direction, as centring does, but chosen by the prompt. A prompt
    with fewer than k real rows removes as many directions as it has rows; an unscorable prompt
    (no real rows, NaN/inf) removes none; a response left with (numerically) nothing is NaN.
    `length_exponent` divides by T^exponent (T = real response rows), taking out how SR grows with
    length (the feature `stable_rank_prompt_adjusted`)."""
    if k < 0:
        raise ValueError(f"k must be non-negative, got {k}")
    single = hidden.dim() == 2
    h = hidden.unsqueeze(0) if single else hidden
    m = None if mask is None else (mask.unsqueeze(0) if single else mask)
    p = prompt_hidden.unsqueeze(0) if prompt_hidden.dim() == 2 else prompt_hidden
    pm = None if prompt_mask is None else (prompt_mask.unsqueeze(0) if prompt_mask.dim() == 1 else prompt_mask)
    if p.shape[0] != h.shape[0] or p.shape[-1] != h.shape[-1]:
        raise ValueError(f"prompt_hidden {tuple(prompt_hidden.shape)} does not match hidden {tuple(hidden.shape)}")
    h, m, valid, _ = _prepare(h, m, dtype)
    p, pm, p_valid, _ = _prepare(p, pm, dtype)
    if k > 0:
        # Right singular vectors of the prompt: eigenvectors of its Gram matrix on the smaller side.
        # With fewer prompt rows than dims (the usual case), v_i = P^T u_i / sigma_i from the P x P
        # Gram matrix: an eigendecomposition of (rows x rows) instead of (d x d).
        t_prompt, d = p.shape[-2:]
        if t_prompt < d:
            evals, u = torch.linalg.eigh(p @ p.mT)  # ascending
            kk = min(k, t_prompt)
            top = evals[..., -kk:]
            basis = (p.mT @ u[..., -kk:]) / top.clamp_min(torch.finfo(dtype).tiny).sqrt()[:, None, :]
            basis = torch.where((top > 0)[:, None, :], basis, 0.0)  # (B, d, kk)
        else:
            evals, evecs = torch.linalg.eigh(p.mT @ p)  # ascending
            kk = min(k, d)
            basis = evecs[..., -kk:]  # (B, d, kk)
        # Only directions the prompt really spans: rank <= real prompt rows, non-zero eigenvalue.
        rank = pm.sum(dim=1).clamp(max=kk)
        slot = torch.arange(kk, device=h.device)
        keep = (slot[None, :] >= kk - rank[:, None]) & (evals[..., -kk:] > 0) & p_valid[:, None]
        basis = basis * keep[:, None, :].to(dtype)
        before = h.square().sum(dim=(-2, -1))
        h = h - (h @ basis) @ basis.mT
        h = torch.where(m.unsqueeze(-1), h, 0.0)
        # A response (numerically) inside the prompt's subspace has nothing left to score.
        left = h.square().sum(dim=(-2, -1))
        valid = valid & (left > 100 * torch.finfo(dtype).eps * before)
    out = stable_rank(h, m, dtype)
    if length_exponent:
        out = out / _real_rows(m).to(out.dtype).clamp_min(1).pow(length_exponent)
    out = torch.where(valid, out, torch.nan)
    return out[0] if single else out
