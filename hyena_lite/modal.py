"""Fit long convolution filters with diagonal (modal) linear state-space models, as in Laughing
Hyena Distillery.

A filter h of length L is kept exactly for its first F taps (a short FIR head, F = `fir`, at least
1) and
approximated for t >= F by a sum of damped complex exponentials h_t ~ Re(sum_i R_i lambda_i^(t-F)):
poles
lambda_i and residues R_i. The poles come from a
Hankel matrix of the filter (the Ho-Kalman / eigensystem realization algorithm), the residues from a
least-squares fit over the whole filter, optionally refined by gradient descent. `order` is the
state
dimension of the real system kept (the number of Hankel singular values); a conjugate pair of poles
is
stored as one complex mode, so a channel needs at most `order` complex numbers of state.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

_MIN_LOG_RADIUS = -60.0  # a pole of radius 0 is stored as exp(-60): its powers vanish without NaN


@dataclass
class ModalFilter:
    """Filters h[c, t] = fir[c, t] (t < F), Re(sum_i residues[c, i] * poles[c, i]^(t-F)) (t >=
    F)."""

    poles: Tensor  # [C, modes] complex
    residues: Tensor  # [C, modes] complex
    fir: Tensor  # [C, F] real: the first F taps, kept exactly
    order: int  # state dimension of the real system that was fitted

    def taps(self, length: int, chunk: int = 4096) -> Tensor:
        """The filters for steps 0..length-1: [C, length], real (float64, or float32 after
        `.to(dtype=float32)`)."""
        head = min(self.fir.shape[-1], length)
        out = torch.empty(
            *self.fir.shape[:-1], length, dtype=self.fir.dtype, device=self.fir.device
        )
        out[..., :head] = self.fir[..., :head]
        for start in range(head, length, chunk):
            steps = torch.arange(
                start - head, min(start + chunk, length) - head, device=self.fir.device
            )
            out[..., start : start + steps.numel()] = modal_sum(self.poles, self.residues, steps)
        return out

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> ModalFilter:
        """A copy on `device`, in complex64/float32 when dtype is torch.float32 (the decoders'
        precision)."""
        cdtype = {torch.float32: torch.complex64, torch.float64: torch.complex128, None: None}[
            dtype
        ]
        return ModalFilter(
            self.poles.to(device=device, dtype=cdtype),
            self.residues.to(device=device, dtype=cdtype),
            self.fir.to(device=device, dtype=dtype),
            self.order,
        )


def modal_sum(poles: Tensor, residues: Tensor, steps: Tensor) -> Tensor:
    """Re(sum_i residues_i * poles_i^steps) for integer steps >= 0: [..., len(steps)], real."""
    log_pole = torch.complex(
        poles.abs().clamp_min(torch.finfo(poles.real.dtype).tiny).log().clamp_min(_MIN_LOG_RADIUS),
        poles.angle(),
    )
    powers = torch.exp(log_pole.unsqueeze(-1) * steps.to(log_pole.real.dtype))  # [..., modes, T]
    return torch.einsum("...m,...mt->...t", residues, powers).real


def hankel(h: Tensor, size: int, shift: int = 1) -> Tensor:
    """The Hankel matrices H[c, i, j] = h[c, i + j + shift] of size x size, for filters h [C, L].
    Taught in chapter 10."""
    index = torch.arange(size, device=h.device)
    return h[:, index[:, None] + index[None, :] + shift]


MAX_HANKEL = (
    512  # default Hankel size cap: the matrix then covers the first 1024 taps after the FIR head
)


def hankel_size(length: int, order: int, size: int | None = None, fir: int = 1) -> int:
    """The Hankel size for filters of `length`: `size`, by default as large as the filter allows up
    to MAX_HANKEL."""
    wanted = MAX_HANKEL if size is None else size
    largest = (length - fir) // 2
    if order < 1 or fir < 1 or largest < order:
        raise ValueError(
            f"cannot fit order {order} after a head of fir={fir} taps to filters of length "
            f"{length}: the Hankel "
            f"matrix needs length >= fir + 2 * order = {fir + 2 * order}; use a smaller order or "
            f"longer filters"
        )
    return max(order, min(wanted, largest))


def hankel_singular_values(h: Tensor, size: int | None = None, fir: int = 1) -> Tensor:
    """Singular values of the Hankel matrix of each filter's taps t >= fir, [C, size], float64:
    how many states it needs. Taught in chapter 10."""
    h = torch.as_tensor(h).double()
    h = h[None] if h.dim() == 1 else h
    size = hankel_size(h.shape[-1], 1, size if size is not None else (h.shape[-1] - fir) // 2, fir)
    return torch.linalg.svdvals(hankel(h, size, shift=fir))


def hankel_spectrum(h: Tensor, size: int, shift: int) -> Tensor:
    """The FFT of the taps that hankel(h, size, shift) holds, as `hankel_times` uses it: [C, n // 2
    + 1]."""
    return torch.fft.rfft(h[:, shift : shift + 2 * size - 1], n=1 << (3 * size - 2).bit_length())


def hankel_times(spectrum: Tensor, size: int, X: Tensor) -> Tensor:
    """Rows of X [C, k, size] times the Hankel matrices whose `hankel_spectrum` is given, by FFT:
    [C, k, size].

    A Hankel product is a correlation, hence a convolution with X reversed. The Hankel matrix is
    symmetric, so this is also (H @ X^T)^T.
    """
    n = 2 * (spectrum.shape[-1] - 1)
    product = spectrum[:, None] * torch.fft.rfft(X.flip(-1), n=n)
    return torch.fft.irfft(product, n=n)[..., size - 1 : 2 * size - 1]


def _orthonormalize(Y: Tensor) -> Tensor:
    """Orthonormal rows spanning the rows of Y [C, k, n], by Cholesky QR done twice (cheap for few
    rows)."""
    eye = torch.eye(Y.shape[-2], dtype=Y.dtype, device=Y.device)
    for _ in range(2):
        gram = Y @ Y.transpose(-1, -2)
        gram = gram + eye * (
            1e-12 * gram.diagonal(dim1=-2, dim2=-1).amax(-1)[:, None, None] + 1e-300
        )
        L = torch.linalg.cholesky(gram)
        Y = torch.linalg.inv(L) @ Y
    return Y


def _top_svd(
    h: Tensor, size: int, shift: int, order: int, power_steps: int = 2
) -> tuple[Tensor, Tensor, Tensor]:
    """The `order` leading singular triplets (U, S, Vh) of the Hankel matrices of h: exact when
    small, else randomized.

    A Hankel matrix is symmetric, so its singular vectors are eigenvectors: a randomized range
    finder (a seeded Gaussian test matrix, `power_steps` power iterations) and a small symmetric
    eigenproblem on that range need only products of the Hankel matrix with a few vectors, done by
    FFT.
    """
    if size <= 2 * order + 32:
        U, S, Vh = torch.linalg.svd(hankel(h, size, shift), full_matrices=False)
        return U[..., :order], S[..., :order], Vh[..., :order, :]
    spectrum = hankel_spectrum(h, size, shift)
    generator = torch.Generator(h.device).manual_seed(0)
    Q = torch.randn(
        h.shape[0], order + 16, size, generator=generator, dtype=h.dtype, device=h.device
    )  # rows
    for _ in range(power_steps + 1):
        Q = _orthonormalize(hankel_times(spectrum, size, Q))
    values, vectors = torch.linalg.eigh(
        hankel_times(spectrum, size, Q) @ Q.transpose(-1, -2)
    )  # Rayleigh-Ritz
    top = values.abs().argsort(dim=-1, descending=True)[..., :order]
    values = values.gather(-1, top)
    U = Q.transpose(-1, -2) @ vectors.gather(
        -1, top[..., None, :].expand(-1, vectors.shape[-2], -1)
    )
    Vh = (U * values.sign()[..., None, :]).transpose(
        -1, -2
    )  # H = U diag(values) U^T = U diag(|values|) Vh
    return U, values.abs(), Vh


def _realize(h: Tensor, order: int, size: int, fir: int) -> tuple[Tensor, Tensor]:
    """Ho-Kalman: poles [C, order] and residues [C, order] of the best order-`order` realization of
    h[:, fir:]."""
    U, S, Vh = _top_svd(h, size, fir, order)
    valid = (
        S > S[..., :1] * 1e-10
    )  # states beyond the numerical rank become poles at 0 with residue 0
    root = torch.where(valid, S, 0).sqrt()
    inverse = torch.where(valid, 1 / root.clamp_min(torch.finfo(S.dtype).tiny), 0)
    shifted_V = hankel_times(hankel_spectrum(h, size, fir + 1), size, Vh).transpose(
        -1, -2
    )  # H_shifted @ V
    A = (U.transpose(-1, -2) @ shifted_V) * (inverse[..., :, None] * inverse[..., None, :])
    B = root * Vh[..., :, 0]  # first column of the controllability matrix
    C = root * U[..., 0, :]  # first row of the observability matrix
    poles, W = torch.linalg.eig(A)
    b = torch.linalg.solve(W, B.to(W.dtype).unsqueeze(-1)).squeeze(-1)
    c = (C.to(W.dtype).unsqueeze(-2) @ W).squeeze(-2)
    return poles, c * b


def _pair(poles: Tensor, residues: Tensor) -> tuple[Tensor, Tensor]:
    """Keep one pole of each conjugate pair (residue doubled) and every real pole; pad channels to
    equal size."""
    scale = poles.abs().clamp_min(1e-300)
    is_real = poles.imag.abs() <= 1e-9 * scale
    keep = is_real | (poles.imag > 0)
    weight = torch.where(is_real, 1.0, 2.0).to(residues.dtype)
    poles = torch.where(is_real, poles.real.to(poles.dtype), poles)
    modes = int(keep.sum(-1).max())
    order_ = torch.argsort((~keep).to(torch.int8), dim=-1, stable=True)[..., :modes]
    kept = keep.gather(-1, order_)
    poles = torch.where(kept, poles.gather(-1, order_), 0)
    residues = torch.where(kept, (residues * weight).gather(-1, order_), 0)
    return poles, residues


def _refit_residues(
    h: Tensor, poles: Tensor, fir: int, ridge: float = 1e-10, chunk: int = 64
) -> Tensor:
    """Least-squares residues for fixed poles over all taps t >= fir of h [C, L]
    (ridge-regularised normal equations)."""
    steps = torch.arange(h.shape[-1] - fir, device=h.device)
    out = []
    for start in range(0, h.shape[0], chunk):
        p = poles[start : start + chunk]
        log_pole = torch.complex(
            p.abs().clamp_min(1e-300).log().clamp_min(_MIN_LOG_RADIUS), p.angle()
        )
        powers = torch.exp(log_pole.unsqueeze(-1) * steps.double())  # [c, m, T]
        design = torch.cat(
            [powers.real, -powers.imag], dim=-2
        )  # Re(R p^t) = Re R Re p^t - Im R Im p^t
        gram = design @ design.transpose(-1, -2)
        gram = gram + ridge * gram.diagonal(dim1=-2, dim2=-1).mean(-1)[:, None, None].clamp_min(
            1e-300
        ) * torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
        rhs = design @ h[start : start + chunk, fir:].unsqueeze(-1)
        solution = torch.linalg.solve(gram, rhs).squeeze(-1)
        modes = p.shape[-1]
        out.append(torch.complex(solution[..., :modes], solution[..., modes:]))
    return torch.cat(out)


def _refine(h: Tensor, fit: ModalFilter, steps: int, lr: float) -> ModalFilter:
    """Gradient refinement of poles and residues (Adam on log-radius, angle, residues) of the
    relative L2 error."""
    log_radius = (
        fit.poles.abs()
        .clamp_min(1e-300)
        .log()
        .clamp_min(_MIN_LOG_RADIUS)
        .clone()
        .requires_grad_(True)
    )
    angle = fit.poles.angle().clone().requires_grad_(True)
    residues = torch.view_as_real(fit.residues).clone().requires_grad_(True)
    target = h[:, fit.fir.shape[-1] :]
    norm = h.pow(2).sum(-1).clamp_min(1e-300)
    times = torch.arange(target.shape[-1], dtype=h.dtype, device=h.device)
    optimizer = torch.optim.Adam([log_radius, angle, residues], lr=lr)
    for _ in range(steps):
        log_pole = torch.complex(log_radius.clamp(max=0.0), angle)
        powers = torch.exp(log_pole.unsqueeze(-1) * times)
        approx = torch.einsum("cm,cmt->ct", torch.view_as_complex(residues), powers).real
        loss = ((approx - target).pow(2).sum(-1) / norm).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        poles = torch.polar(log_radius.clamp(max=0.0).exp(), angle)
        return ModalFilter(poles, torch.view_as_complex(residues).clone(), fit.fir, fit.order)


def fit_modal(
    h: Tensor,
    order: int,
    fir: int = 1,
    size: int | None = None,
    max_radius: float = 1.0 - 1e-7,
    refit: bool = True,
    refine_steps: int = 0,
    lr: float = 1e-3,
    chunk: int = 256,
) -> ModalFilter:
    """Fit filters h [C, L] (or [L]): their first `fir` taps exactly, the rest by a modal model of
    real order `order`.

    Works in float64. Poles come from the size x size Hankel matrix of h_fir.. (`hankel_size`);
    poles outside radius `max_radius` are pulled inside so that the recurrence is stable; residues
    are then refitted by least squares over all taps t >= fir (`refit`), and refined by
    `refine_steps` steps of Adam if asked. Channels are processed `chunk` at a time to bound memory.
    Taught in chapter 10.
    """
    h = torch.as_tensor(h).double()
    h = h[None] if h.dim() == 1 else h
    if h.dim() != 2:
        raise ValueError(
            f"filters must have shape [channels, length] or [length], got {tuple(h.shape)}"
        )
    size = hankel_size(h.shape[-1], order, size, fir)
    realized = [_realize(part, order, size, fir) for part in h.split(chunk)]
    poles, residues = _pair(
        torch.cat([p for p, _ in realized]), torch.cat([r for _, r in realized])
    )
    radius = poles.abs()
    poles = torch.where(radius > max_radius, poles * (max_radius / radius.clamp_min(1e-300)), poles)
    if refit:
        residues = _refit_residues(h, poles, fir)
    fit = ModalFilter(poles, residues, h[:, :fir].clone(), order)
    return _refine(h, fit, refine_steps, lr) if refine_steps > 0 else fit


def relative_error(h: Tensor, fit: ModalFilter) -> Tensor:
    """||h - fit|| / ||h|| per channel over all taps, [C], float64. Taught in chapter 10."""
    h = torch.as_tensor(h).double()
    h = h[None] if h.dim() == 1 else h
    approx = fit.taps(h.shape[-1]).double().to(h.device)
    return (h - approx).norm(dim=-1) / h.norm(dim=-1).clamp_min(1e-300)
