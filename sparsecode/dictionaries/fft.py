r"""Global circular convolution in the Fourier domain (the dictionary of the original VARS-S).

Signals are ``(B, C, N)`` with ``N = h·w`` tokens on an ``h × w`` grid; each channel :math:`c` has ``A`` atoms, each a
global circular filter given by its half spectrum :math:`K_{c,a} \in \mathbb C^{h \times (w/2+1)}`. Codes are
``(B, C·A, N)`` (channel-major: the ``A`` atoms of channel 0 first). With :math:`\mathcal F` = ``rfft2`` and
:math:`\mathcal F^{-1}` = ``irfft2`` (both ``norm="ortho"``):

.. math::
    (P^\top x)_{c,a} = \mathcal F^{-1}\big(K_{c,a} \odot \mathcal F x_c\big), \qquad
    (P u)_c = \mathcal F^{-1}\Big(\textstyle\sum_a \overline{K_{c,a}} \odot \mathcal F u_{c,a}\Big),

and :math:`P^\top P` acts pointwise in frequency: per frequency the rank-one ``A × A`` matrix :math:`K K^H`, applied as
:math:`K_a \sum_b \overline{K_b}\,\hat u_b` (two products of the codes' size rather than one ``A`` times larger).

**Self-conjugate columns.** The frequency columns 0 and :math:`w/2` (``w`` even) of a real signal's half spectrum
are Hermitian along the ``h`` axis, and ``irfft2`` silently projects them onto that set. ``encode`` and ``decode``
therefore act with the *effective* kernel :math:`K^{e}`, equal to :math:`K` except on those columns, where
:math:`K^{e}[k] = (K[k] + \overline{K[-k]})/2`. They stay exact adjoints for any complex :math:`K`, but the pointwise
Gram :math:`K K^H` of the raw kernel is not ``encode∘decode`` there. ``gram_mode="exact"`` (default) builds the Gram
from :math:`K^{e}` (exactly ``encode∘decode``); ``gram_mode="pointwise"`` uses the raw :math:`K K^H` as the released
VARS-S code does (``encode``/``decode`` are its products bit for bit; the Gram equals its ``A × A`` matrix up to
rounding).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from .._validation import check_float_tensor, check_positive_int, check_trailing_shape
from .base import Dictionary, LipschitzSpec

__all__ = ["FFTConvDictionary", "FFTConvOperator", "GRAM_MODES", "hermitian_projection"]

#: how ``gram`` is formed: from the Hermitian-consistent kernel (exactly encode∘decode) or from the raw kernel
GRAM_MODES = ("exact", "pointwise")


def hermitian_projection(kernel: torch.Tensor, width: int) -> torch.Tensor:
    r"""Project the self-conjugate frequency columns of a half spectrum onto Hermitian symmetry along ``h``.

    .. math:: K[..., k, j] \leftarrow \tfrac12\big(K[..., k, j] + \overline{K[..., -k \bmod h, j]}\big),
              \quad j \in \{0\} \cup \{w/2 \text{ if } w \text{ even}\},

    the other columns unchanged. ``irfft2`` applies exactly this projection to its input, so
    ``irfft2(K ⊙ X) == irfft2(hermitian_projection(K) ⊙ X)`` for the spectrum ``X`` of a real signal.

    Args:
        kernel: complex half spectra, shape ``(..., h, w // 2 + 1)``.
        width: the grid width ``w`` (its parity decides whether the last column is self-conjugate).
    """
    columns = [0] + ([width // 2] if width % 2 == 0 and width // 2 != 0 else [])
    flipped = torch.roll(torch.flip(kernel, dims=(-2,)), shifts=1, dims=-2)  # K[-k mod h]
    mask = torch.zeros(kernel.shape[-1], dtype=torch.bool, device=kernel.device)
    mask[columns] = True
    return torch.where(mask, (kernel + flipped.conj()) / 2, kernel)


def _rfft(x: torch.Tensor) -> torch.Tensor:
    return torch.fft.rfftn(x, dim=(-2, -1), norm="ortho")


def _irfft(z: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    return torch.fft.irfftn(z, s=grid, dim=(-2, -1), norm="ortho")


def _real_dtype(kernel: torch.Tensor) -> torch.dtype:
    return torch.float64 if kernel.dtype == torch.complex128 else torch.float32


def _encode(x: torch.Tensor, kernel: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    # x (B, C, N); kernel (C, A, 1, h, w') -> (B, C*A, N); the product/sum layout of the released code
    B, C, N = x.shape
    A = kernel.shape[1]
    xf = _rfft(x.to(_real_dtype(kernel)).reshape(B, C, 1, 1, *grid))
    z = (xf * kernel.reshape(1, C, A, 1, *kernel.shape[-2:])).sum(dim=3)
    return _irfft(z, grid).reshape(B, C * A, N)


def _decode(u: torch.Tensor, kernel: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    # u (B, C*A, N) -> (B, C, N), with conj(K) summed over the atoms of each channel
    B, _, N = u.shape
    C, A = kernel.shape[:2]
    uf = _rfft(u.to(_real_dtype(kernel)).reshape(B, C, 1, A, *grid))
    z = (uf * kernel.conj().transpose(1, 2).reshape(1, C, 1, A, *kernel.shape[-2:])).sum(dim=3)
    return _irfft(z, grid).reshape(B, C, N)


def _apply_gram(u: torch.Tensor, kernel: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    r""":math:`P^\top P u` with the per-frequency Gram :math:`K K^H` applied in its rank-one form
    :math:`K_a \sum_b \overline{K_b}\,\hat u_b`: two products of the codes' size instead of one ``A`` times larger
    (the same values as the ``A × A`` matrix :math:`G_{ab} = K_a \overline{K_b}` per frequency, up to rounding)."""
    B, CA, N = u.shape
    C, A = kernel.shape[:2]
    uf = _rfft(u.to(_real_dtype(kernel)).reshape(B, C, A, *grid))  # (B, C, A, h, w')
    k = kernel.reshape(1, C, A, *kernel.shape[-2:])
    mixed = (uf * k.conj()).sum(dim=2, keepdim=True)  # (B, C, 1, h, w')
    return _irfft(mixed * k, grid).reshape(B, CA, N)


def _channel_lipschitz(kernel: torch.Tensor) -> torch.Tensor:
    r"""Per channel :math:`\max_k \sigma_{max}(K[k] K[k]^H) = \max_k \|K_{:,k}\|^2` (each per-frequency Gram has rank
    one, so its top singular value is the squared norm of the atom vector), shape ``(C,)``."""
    power = (kernel.real ** 2 + kernel.imag ** 2).sum(dim=(1, 2))  # (C, h, w')
    return power.flatten(1).amax(dim=1)


class FFTConvOperator:
    r"""The bound form of :class:`FFTConvDictionary` for one batch: the complex kernel and the per-frequency Gram
    :math:`K K^H` computed once, then ``decode``/``encode``/``gram`` as in the module docstring.

    Args:
        dictionary: the owning dictionary (for shapes, step sizes and signal checks).
        kernel: complex kernel ``(C, A, 1, h, w // 2 + 1)``.
        gram_source: the kernel whose per-frequency Gram :math:`K K^H` is :math:`P^\top P`
            (``(C, A, 1, h, w // 2 + 1)``: the raw kernel, or the effective one, see ``gram_mode``).
    """

    def __init__(self, dictionary: "FFTConvDictionary", kernel: torch.Tensor, gram_source: torch.Tensor) -> None:
        self.dictionary, self.kernel, self.gram_source = dictionary, kernel, gram_source
        self.grid = dictionary.grid

    def decode(self, u: torch.Tensor) -> torch.Tensor:
        """:math:`P u`, ``(B, C·A, N)`` → ``(B, C, N)``."""
        return _decode(u, self.kernel, self.grid)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`P^\\top x`, ``(B, C, N)`` → ``(B, C·A, N)``."""
        return _encode(x, self.kernel, self.grid)

    def gram(self, u: torch.Tensor) -> torch.Tensor:
        """:math:`P^\\top P u`, pointwise in frequency: :math:`K K^H` per frequency, in its rank-one form."""
        return _apply_gram(u, self.gram_source, self.grid)

    def lipschitz(self) -> torch.Tensor:
        """The dictionary's step-size bound, per channel, broadcast to codes ``(1, C·A, 1)``."""
        return self.dictionary.lipschitz()

    def check_signal(self, x: torch.Tensor, name: str = "x") -> None:
        self.dictionary.check_signal(x, name)

    def code_shape(self, signal_shape: Sequence[int]) -> tuple[int, ...]:
        return self.dictionary.code_shape(signal_shape)


class FFTConvDictionary(Dictionary):
    r"""Per-channel global circular convolution dictionary in the Fourier domain (VARS-S):
    :math:`(P^\top x)_{c,a} = \mathcal F^{-1}(K_{c,a} \odot \mathcal F x_c)`, ``A`` atoms per channel.

    The kernel is stored as a real tensor ``kernel`` of shape ``(C, A, 1, h, w // 2 + 1, 2)`` (real and imaginary
    parts, the layout of the released checkpoints); :meth:`complex_kernel` views it as complex.

    Args:
        channels: number of channels ``C``.
        atoms_per_channel: atoms ``A`` per channel.
        grid: the token grid ``(h, w)`` (an int means square); signals have ``N = h·w`` tokens.
        kernel: an explicit kernel, complex ``(C, A, 1, h, w//2+1)`` or its real view with a trailing 2.
        gram_mode: ``"exact"`` (Gram of the Hermitian-consistent kernel, exactly ``encode∘decode``) or
            ``"pointwise"`` (raw :math:`K K^H`, as the released code).
        lipschitz: ``"exact"`` (per channel :math:`\max_k \|K_{:,k}\|^2 (1 + 10^{-6})`, at every call), ``"running"``
            (the buffer ``L``, refreshed by :meth:`refresh_step_size`), ``"power"``, or a positive number.
        init_std: standard deviation of the random initial kernel (real and imaginary parts).
        learnable: register the kernel as an ``nn.Parameter`` (else a buffer).
        generator: random generator for the initialisation.
        device, dtype: where to build the kernel (``dtype`` is the real dtype, float32 or float64).
    """

    _lipschitz_modes = ("exact", "running", "power")

    def __init__(
        self,
        channels: int,
        atoms_per_channel: int,
        grid: int | Sequence[int],
        *,
        kernel: torch.Tensor | None = None,
        gram_mode: str = "exact",
        lipschitz: LipschitzSpec = "exact",
        init_std: float = 0.06,
        learnable: bool = True,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(lipschitz=lipschitz)
        check_positive_int(channels, "channels")
        check_positive_int(atoms_per_channel, "atoms_per_channel")
        grid_t = (grid, grid) if isinstance(grid, int) and not isinstance(grid, bool) else tuple(grid)
        if len(grid_t) != 2 or any(isinstance(g, bool) or not isinstance(g, int) or g < 1 for g in grid_t):
            raise ValueError(f"grid must be a positive int or a pair (h, w) of positive ints, got {grid!r}")
        if gram_mode not in GRAM_MODES:
            raise ValueError(f"gram_mode must be one of {GRAM_MODES}, got {gram_mode!r}")
        self.channels, self.atoms_per_channel, self.grid = channels, atoms_per_channel, grid_t
        self.gram_mode = gram_mode
        h, w = grid_t
        shape = (channels, atoms_per_channel, 1, h, w // 2 + 1)
        if kernel is not None:
            check_float_tensor(kernel, "kernel", min_ndim=5)
            real = torch.view_as_real(kernel) if kernel.is_complex() else kernel
            if tuple(real.shape) != shape + (2,):
                raise ValueError(f"kernel must have shape {shape} (complex) or {shape + (2,)} (real view), "
                                 f"got {tuple(kernel.shape)}")
            k = real.detach().clone().to(device=device, dtype=dtype or real.dtype)
        else:
            if not init_std > 0:
                raise ValueError(f"init_std must be > 0, got {init_std!r}")
            k = (torch.randn(shape + (2,), generator=generator, dtype=dtype or torch.get_default_dtype())
                 * init_std).to(device)
        if k.dtype not in (torch.float32, torch.float64):
            raise TypeError(f"kernel must be float32 or float64 (complex64/complex128), got {k.dtype}")
        if learnable:
            self.kernel = nn.Parameter(k)
        else:
            self.register_buffer("kernel", k)
        self.register_buffer("L", torch.zeros(channels, dtype=k.dtype, device=k.device))
        self.refresh_step_size(momentum=1.0)

    @property
    def n_atoms(self) -> int:
        """Code channels ``C·A``."""
        return self.channels * self.atoms_per_channel

    @property
    def n_tokens(self) -> int:
        return self.grid[0] * self.grid[1]

    def complex_kernel(self) -> torch.Tensor:
        """The raw complex kernel :math:`K`, ``(C, A, 1, h, w // 2 + 1)``."""
        return torch.view_as_complex(self.kernel)

    def effective_kernel(self) -> torch.Tensor:
        """:math:`K^{e}`: the kernel with its self-conjugate columns projected (see :func:`hermitian_projection`);
        ``encode``/``decode`` give the same outputs with it as with the raw kernel."""
        return hermitian_projection(self.complex_kernel(), self.grid[1])

    def _gram_source(self) -> torch.Tensor:
        return self.effective_kernel() if self.gram_mode == "exact" else self.complex_kernel()

    # --- the operator ---------------------------------------------------------------------------------------------
    def bind(self, context: Any = None) -> FFTConvOperator:
        """The operator for one batch, with the per-frequency Gram computed once."""
        super().bind(context)
        return FFTConvOperator(self, self.complex_kernel(), self._gram_source())

    def decode(self, u: torch.Tensor) -> torch.Tensor:
        r""":math:`(P u)_c = \mathcal F^{-1}(\sum_a \overline{K_{c,a}} \odot \mathcal F u_{c,a})`."""
        return _decode(u, self.complex_kernel(), self.grid)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`(P^\top x)_{c,a} = \mathcal F^{-1}(K_{c,a} \odot \mathcal F x_c)`."""
        return _encode(x, self.complex_kernel(), self.grid)

    def gram(self, u: torch.Tensor) -> torch.Tensor:
        r""":math:`P^\top P u` pointwise in frequency (see ``gram_mode``)."""
        return _apply_gram(u, self._gram_source(), self.grid)

    # --- step size ------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def refresh_step_size(self, momentum: float = 0.1) -> None:
        r"""Update the running step-size buffer: :math:`L \leftarrow (1-m) L + m\,\sigma_{max}`, where per channel
        :math:`\sigma_{max} = \max_k \sigma_{max}(G_k)` over all frequencies of the per-frequency Gram used by
        ``gram`` (set with momentum 1 at construction).

        Args:
            momentum: :math:`m \in [0, 1]` (0 keeps ``L``).
        """
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0 <= momentum <= 1:
            raise ValueError(f"momentum must be a number in [0, 1], got {momentum!r}")
        sigma = _channel_lipschitz(self._gram_source().detach()).to(self.L.dtype)
        self.L.mul_(1 - momentum).add_(momentum * sigma)

    def _per_channel_to_code(self, per_channel: torch.Tensor) -> torch.Tensor:
        return per_channel.reshape(-1, 1).repeat(1, self.atoms_per_channel).reshape(1, self.n_atoms, 1)

    def lipschitz(self) -> torch.Tensor:
        """Per channel (broadcast to codes ``(1, C·A, 1)``): exact, the running buffer, power iteration, or fixed."""
        if self.lipschitz_mode == "running":
            return self._per_channel_to_code(self.L.detach())
        if self.lipschitz_mode == "exact":
            exact = _channel_lipschitz(self._gram_source().detach())
            return self._per_channel_to_code(exact * (1 + 1e-6))  # a rounding margin, as DenseOperator's "exact"
        return super().lipschitz()

    # --- shapes ---------------------------------------------------------------------------------------------------
    def check_signal(self, x: torch.Tensor, name: str = "x") -> None:
        """Signals are ``(B, C, N)`` with ``N = h·w``."""
        if x.ndim != 3:
            raise ValueError(f"{name} must have shape (B, {self.channels}, {self.n_tokens}) = (B, C, h·w), "
                             f"got {tuple(x.shape)}")
        check_trailing_shape(x, name, (self.channels, self.n_tokens), f"(B, C, h·w) with grid {self.grid}")

    def code_shape(self, signal_shape: Sequence[int]) -> tuple[int, ...]:
        return (int(signal_shape[0]), self.n_atoms, self.n_tokens)

    def probe_shape(self) -> tuple[tuple[int, ...], int]:
        return (1, self.n_atoms, self.n_tokens), 2

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, atoms_per_channel={self.atoms_per_channel}, grid={self.grid}, "
                f"gram_mode={self.gram_mode!r}, lipschitz={self.lipschitz_mode!r}")
