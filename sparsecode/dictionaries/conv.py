r"""Convolutional dictionary (1-D, 2-D, 3-D): the atoms are translated copies of small kernels.

One kernel :math:`W` of shape ``(n_atoms, in_channels // groups, *kernel_size)`` serves both directions:

.. math:: P^\top x = W \star x \;(\text{convolution, ``conv{1,2,3}d``}),\qquad
          P u = W^\top \star u \;(\text{transposed convolution with the same kernel}),

with the same stride, padding, dilation and groups, so ``encode`` is the exact adjoint of ``decode``. Signals are
``(B, in_channels, *spatial)`` and codes ``(B, n_atoms, *spatial_out)`` with
:math:`s_{out} = \lfloor (s + 2p - d(k-1) - 1)/\text{stride} \rfloor + 1`.

With stride > 1 several signal sizes share one code size. ``decode`` returns ``signal_size`` when it was given (it
picks the transposed convolution's ``output_padding`` for that), otherwise the smallest signal size with that code
size; :meth:`ConvDictionary.check_signal` rejects a signal that ``decode`` could not return.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
import torch.nn.functional as F

from .._validation import check_float_tensor, check_positive_int
from .base import Dictionary, LipschitzSpec

__all__ = ["ConvDictionary"]

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def _as_tuple(value: int | Sequence[int], ndim: int, name: str, *, minimum: int) -> tuple[int, ...]:
    values = (value,) * ndim if isinstance(value, int) and not isinstance(value, bool) else tuple(value)
    if len(values) != ndim or any(isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in values):
        raise ValueError(f"{name} must be an int >= {minimum} or a sequence of {ndim} such ints, got {value!r}")
    return values


class ConvDictionary(Dictionary):
    r"""Convolutional dictionary: :math:`P^\top x = W \star x` (convolution), :math:`P u = W^\top \star u`
    (transposed convolution with the same kernel :math:`W`).

    Example::

        d = ConvDictionary(in_channels=3, n_atoms=16, kernel_size=5, padding=2, signal_size=(32, 32))
        layer = SparseReconstruction(d, solver=FISTA(max_iter=50), threshold=SoftThreshold(0.1))
        z = layer(x)  # x: (B, 3, 32, 32) -> z: (B, 3, 32, 32), codes (B, 16, 32, 32)

    Args:
        in_channels: signal channels ``C_in``.
        n_atoms: number of kernels (code channels); a multiple of ``groups``.
        kernel_size: int or one int per spatial dimension.
        ndim: number of spatial dimensions, 1, 2 or 3.
        stride, padding, dilation: as in ``torch.nn.functional.conv{ndim}d`` (zero padding).
        groups: channel groups; ``in_channels`` and ``n_atoms`` must be multiples of it.
        signal_size: the spatial size of the signals (optional). Needed for ``lipschitz="power"`` (the probe's size)
            and, with stride > 1, to decode to a size other than the smallest one.
        weight: an explicit kernel of shape ``(n_atoms, in_channels // groups, *kernel_size)`` (then ``n_atoms`` and
            ``kernel_size`` may be omitted).
        learnable: register the kernel as an ``nn.Parameter`` (else a buffer).
        normalize_atoms: rescale each kernel to unit :math:`\ell_2` norm at every use.
        lipschitz: ``"power"`` (power iteration on a code of ``signal_size``) or a positive number.
        power_iterations: iterations of a cold power iteration.
        generator: random generator for the initialisation (unit-norm Gaussian kernels).
        device, dtype: where to build the kernel.
    """

    _lipschitz_modes = ("power",)

    def __init__(
        self,
        in_channels: int,
        n_atoms: int | None = None,
        kernel_size: int | Sequence[int] | None = None,
        *,
        ndim: int = 2,
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
        dilation: int | Sequence[int] = 1,
        groups: int = 1,
        signal_size: int | Sequence[int] | None = None,
        weight: torch.Tensor | None = None,
        learnable: bool = True,
        normalize_atoms: bool = False,
        lipschitz: LipschitzSpec = "power",
        power_iterations: int = 50,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(lipschitz=lipschitz, power_iterations=power_iterations)
        if ndim not in _CONV:
            raise ValueError(f"ndim must be 1, 2 or 3, got {ndim!r}")
        check_positive_int(in_channels, "in_channels")
        check_positive_int(groups, "groups")
        if weight is not None:
            check_float_tensor(weight, "weight", min_ndim=ndim + 2)
            if weight.ndim != ndim + 2:
                raise ValueError(f"weight must have shape (n_atoms, in_channels // groups, *kernel_size) with "
                                 f"{ndim} spatial dims, got {tuple(weight.shape)}")
            if n_atoms is not None and n_atoms != weight.shape[0]:
                raise ValueError(f"n_atoms={n_atoms} does not match weight of shape {tuple(weight.shape)}")
            if kernel_size is not None and _as_tuple(kernel_size, ndim, "kernel_size", minimum=1) != tuple(
                    weight.shape[2:]):
                raise ValueError(f"kernel_size={kernel_size!r} does not match weight of shape {tuple(weight.shape)}")
            n_atoms, kernel_size = int(weight.shape[0]), tuple(int(k) for k in weight.shape[2:])
        check_positive_int(n_atoms, "n_atoms")
        if kernel_size is None:
            raise ValueError("kernel_size must be given (or weight=)")
        self.ndim = ndim
        self.in_channels, self.n_atoms, self.groups = in_channels, n_atoms, groups
        self.kernel_size = _as_tuple(kernel_size, ndim, "kernel_size", minimum=1)
        self.stride = _as_tuple(stride, ndim, "stride", minimum=1)
        self.padding = _as_tuple(padding, ndim, "padding", minimum=0)
        self.dilation = _as_tuple(dilation, ndim, "dilation", minimum=1)
        if in_channels % groups or n_atoms % groups:
            raise ValueError(f"in_channels ({in_channels}) and n_atoms ({n_atoms}) must be multiples of "
                             f"groups ({groups})")
        self.signal_size = None if signal_size is None else _as_tuple(signal_size, ndim, "signal_size", minimum=1)
        if self.signal_size is not None:
            self._check_spatial(self.signal_size, "signal_size")
        kernel_shape = (n_atoms, in_channels // groups) + self.kernel_size
        if weight is not None:
            if tuple(weight.shape) != kernel_shape:
                raise ValueError(f"weight must have shape {kernel_shape} (n_atoms, in_channels // groups, "
                                 f"*kernel_size), got {tuple(weight.shape)}")
            w = weight.detach().clone().to(device=device, dtype=dtype or weight.dtype)
        else:
            w = torch.randn(kernel_shape, generator=generator, dtype=dtype or torch.get_default_dtype())
            w = (w / w.flatten(1).norm(dim=1).reshape((-1,) + (1,) * (ndim + 1))).to(device)
        if learnable:
            self.weight = nn.Parameter(w)
        else:
            self.register_buffer("weight", w)
        self.normalize_atoms = normalize_atoms

    # --- sizes ----------------------------------------------------------------------------------------------------
    def _code_spatial(self, spatial: Sequence[int]) -> tuple[int, ...]:
        return tuple((s + 2 * p - d * (k - 1) - 1) // st + 1 for s, p, d, k, st in
                     zip(spatial, self.padding, self.dilation, self.kernel_size, self.stride))

    def _smallest_signal(self, code_spatial: Sequence[int]) -> tuple[int, ...]:
        return tuple((c - 1) * st - 2 * p + d * (k - 1) + 1 for c, st, p, d, k in
                     zip(code_spatial, self.stride, self.padding, self.dilation, self.kernel_size))

    def _check_spatial(self, spatial: Sequence[int], name: str) -> None:
        out = self._code_spatial(spatial)
        if any(o < 1 for o in out):
            raise ValueError(f"{name} {tuple(spatial)} is smaller than the (dilated) kernel {self.kernel_size} "
                             f"with padding {self.padding}")

    # --- the operator ---------------------------------------------------------------------------------------------
    def kernel(self) -> torch.Tensor:
        """The kernel :math:`W` as used (unit-norm atoms when ``normalize_atoms``)."""
        w = self.weight
        if self.normalize_atoms:
            norms = w.flatten(1).norm(dim=1).clamp_min(torch.finfo(w.dtype).tiny)
            w = w / norms.reshape((-1,) + (1,) * (self.ndim + 1))
        return w

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`P^\top x = W \star x`: ``(B, in_channels, *spatial)`` → ``(B, n_atoms, *spatial_out)``."""
        return _CONV[self.ndim](x, self.kernel(), stride=self.stride, padding=self.padding,
                                dilation=self.dilation, groups=self.groups)

    def decode(self, u: torch.Tensor) -> torch.Tensor:
        r""":math:`P u` (transposed convolution): ``(B, n_atoms, *spatial_out)`` → ``(B, in_channels, *spatial)``,
        ``spatial = signal_size`` when given, else the smallest size with this code size."""
        if u.ndim != self.ndim + 2 or u.shape[1] != self.n_atoms:
            raise ValueError(f"u must have shape (B, {self.n_atoms}, *spatial_out) with {self.ndim} spatial dims, "
                             f"got {tuple(u.shape)}")
        code_spatial = tuple(u.shape[2:])
        smallest = self._smallest_signal(code_spatial)
        target = smallest
        if self.signal_size is not None:
            if self._code_spatial(self.signal_size) != code_spatial:
                raise ValueError(f"u has spatial size {code_spatial}, but signals of signal_size {self.signal_size} "
                                 f"have codes of spatial size {self._code_spatial(self.signal_size)}")
            target = self.signal_size
        output_padding = tuple(t - s for t, s in zip(target, smallest))
        return _CONV_T[self.ndim](u, self.kernel(), stride=self.stride, padding=self.padding,
                                  output_padding=output_padding, groups=self.groups, dilation=self.dilation)

    # --- shapes ---------------------------------------------------------------------------------------------------
    def check_signal(self, x: torch.Tensor, name: str = "x") -> None:
        """Signals are ``(B, in_channels, *spatial)``, decodable back to their own size."""
        if x.ndim != self.ndim + 2 or x.shape[1] != self.in_channels:
            raise ValueError(f"{name} must have shape (B, {self.in_channels}, *spatial) with {self.ndim} spatial "
                             f"dims, got {tuple(x.shape)}")
        spatial = tuple(x.shape[2:])
        self._check_spatial(spatial, f"{name}'s spatial size")
        if self.signal_size is not None:
            if spatial != self.signal_size:
                raise ValueError(f"{name} must have spatial size signal_size={self.signal_size}, got {spatial}")
        elif self._smallest_signal(self._code_spatial(spatial)) != spatial:
            raise ValueError(f"{name} has spatial size {spatial}, which the transposed convolution cannot return "
                             f"without knowing it (stride {self.stride}): pass signal_size={spatial} to "
                             f"ConvDictionary")

    def code_shape(self, signal_shape: Sequence[int]) -> tuple[int, ...]:
        return (int(signal_shape[0]), self.n_atoms) + self._code_spatial(tuple(signal_shape[2:]))

    def probe_shape(self) -> tuple[tuple[int, ...], int]:
        """A one-sample code of ``signal_size``'s code size (power iteration needs ``signal_size``)."""
        if self.signal_size is None:
            raise ValueError("ConvDictionary needs signal_size=... for lipschitz='power' (the probe's size), "
                             "or give lipschitz=<a positive number>")
        return (1, self.n_atoms) + self._code_spatial(self.signal_size), self.ndim + 1

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, n_atoms={self.n_atoms}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, groups={self.groups}, "
                f"signal_size={self.signal_size}")
