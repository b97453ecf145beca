r"""The union of the atoms of several dictionaries: :math:`P = [P_1, \dots, P_k]` (VARS-SD: :math:`[\Phi(X), K]`).

.. math:: P u = \sum_i P_i u_i, \qquad P^\top x = (P_1^\top x, \dots, P_k^\top x), \qquad
          \|P^\top P\|_2 \le \textstyle\sum_i \|P_i^\top P_i\|_2 .

Binding (``bind(context)``: every dynamic part receives ``context``, every static part ``None``):

* when every part binds to a :class:`~sparsecode.dictionaries.dense.DenseOperator`, the result is ONE dense operator
  whose weight is the concatenation of the parts' weights on the atom axis (batch dimensions broadcast; stacked when
  any part is). It is given as blocks: products go part by part (a static part is applied once to the rows of the
  whole batch, never copied per image) and the concatenation is formed only if its weight is read; the Gram matrix
  is assembled from the blocks. ``normalize_atoms=True`` then L2-normalises every concatenated atom over the signal
  dimension — what the released VARS-SD does with :math:`[\Phi(X), K]`;
* otherwise a :class:`ConcatOperator`: the code is the parts' codes concatenated along ``atom_dim`` (the parts'
  codes must agree on every other dimension, e.g. convolutional codes ``(B, atoms, *spatial)`` with ``atom_dim=1``),
  and the step size is the sum of the parts' bounds.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from .base import Dictionary, LipschitzSpec
from ._block_gram import block_gram
from .dense import DenseOperator
from .performer import _EPS, l2_normalize

__all__ = ["ConcatDictionary", "ConcatOperator"]


def _scalar_bound(L: torch.Tensor) -> torch.Tensor:
    return L.detach().amax() if L.numel() > 1 else L.detach().reshape(())


class ConcatOperator:
    r"""Generic concatenation of bound operators: :math:`Pu = \sum_i P_i u_i` with
    :math:`u = \mathrm{cat}(u_1, \dots, u_k)` along ``atom_dim``.

    Args:
        parts: the bound operators.
        sizes: each part's number of atoms along ``atom_dim``.
        atom_dim: the code dimension that indexes atoms.
        signal_check: the owning dictionary's ``check_signal``.
    """

    def __init__(self, parts: Sequence[Any], sizes: Sequence[int], atom_dim: int, signal_check: Any) -> None:
        self.parts, self.sizes, self.atom_dim = tuple(parts), tuple(int(s) for s in sizes), atom_dim
        self._signal_check = signal_check

    def split(self, u: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The parts' codes :math:`(u_1, \\dots, u_k)` of a concatenated code."""
        if u.shape[self.atom_dim] != sum(self.sizes):
            raise ValueError(f"u must have {sum(self.sizes)} atoms along dim {self.atom_dim}, got shape "
                             f"{tuple(u.shape)}")
        return torch.split(u, self.sizes, dim=self.atom_dim)

    def decode(self, u: torch.Tensor) -> torch.Tensor:
        out = None
        for part, ui in zip(self.parts, self.split(u)):
            z = part.decode(ui)
            out = z if out is None else out + z
        return out

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([part.encode(x) for part in self.parts], dim=self.atom_dim)

    def gram(self, u: torch.Tensor) -> torch.Tensor:
        return self.encode(self.decode(u))

    def lipschitz(self) -> torch.Tensor:
        r""":math:`\sum_i \max L_i` (each part's largest bound), an upper bound on :math:`\|P^\top P\|_2`."""
        return torch.stack([_scalar_bound(part.lipschitz()) for part in self.parts]).sum()

    def check_signal(self, x: torch.Tensor, name: str = "x") -> None:
        self._signal_check(x, name)


class ConcatDictionary(Dictionary):
    r"""Union of the atoms of several dictionaries (static and dynamic mixed): :math:`P = [P_1, \dots, P_k]`.

    Example (VARS-SD: random features and a static per-head dictionary over the tokens, atoms normalised)::

        d = ConcatDictionary([PerformerDictionary(6, 32, 64),
                              LinearDictionary(weight=torch.randn(6, 196, 64))], normalize_atoms=True)
        op = d.bind(q)   # one DenseOperator of weight (B, 6, 196, 128)

    Args:
        parts: the dictionaries (at least two).
        normalize_atoms: with dense parts, L2-normalise every concatenated atom over the signal dimension.
        atom_dim: the code dimension to concatenate along when the parts are not all dense (default 1, the channel
            axis of convolutional and FFT codes).
        lipschitz: for the dense case, ``"power"``, ``"exact"``, ``"row_sum"``, ``"perron"`` or a positive number
            (the generic case sums the parts' bounds).
        power_iterations: iterations of a cold power iteration.
    """

    _lipschitz_modes = ("power", "exact", "row_sum", "perron")

    def __init__(self, parts: Sequence[Dictionary], *, normalize_atoms: bool = False, atom_dim: int = 1,
                 lipschitz: LipschitzSpec = "power", power_iterations: int = 50) -> None:
        super().__init__(lipschitz=lipschitz, power_iterations=power_iterations)
        parts = list(parts)
        if len(parts) < 2 or not all(isinstance(p, Dictionary) for p in parts):
            raise TypeError(f"parts must be a sequence of at least two sparsecode Dictionary objects, got "
                            f"{[type(p).__name__ for p in parts]}")
        if isinstance(atom_dim, bool) or not isinstance(atom_dim, int):
            raise TypeError(f"atom_dim must be an int, got {type(atom_dim).__name__}")
        self.parts = nn.ModuleList(parts)
        self.normalize_atoms, self.atom_dim = normalize_atoms, atom_dim

    @property
    def is_dynamic(self) -> bool:  # type: ignore[override]
        """Dynamic when any part is."""
        return any(p.is_dynamic for p in self.parts)

    def bind(self, context: Any = None) -> DenseOperator | ConcatOperator:
        """One dense operator when every part binds to a dense one, else a :class:`ConcatOperator`."""
        if context is not None and not self.is_dynamic:
            raise ValueError(f"ConcatDictionary has only static parts: context must be None, "
                             f"got {type(context).__name__}")
        if context is None and self.is_dynamic:
            raise ValueError("ConcatDictionary has a dynamic part: bind(context) needs its context (e.g. the tokens)")
        bound = [p.bind(context if p.is_dynamic else None) for p in self.parts]
        if all(isinstance(b, DenseOperator) for b in bound):
            return self._dense(bound)
        if self.normalize_atoms:
            raise ValueError("normalize_atoms=True needs every part to bind to a dense operator")
        sizes = []
        for p in self.parts:
            n = getattr(p, "n_atoms", None)
            if not isinstance(n, int):
                raise TypeError(f"ConcatDictionary needs every non-dense part to have an int n_atoms (atoms along "
                                f"atom_dim), {type(p).__name__} has none")
            sizes.append(n)
        return ConcatOperator(bound, sizes, self.atom_dim, self.check_signal)

    def _dense(self, bound: Sequence[DenseOperator]) -> DenseOperator:
        n_features = {b.n_features for b in bound}
        if len(n_features) != 1:
            raise ValueError(f"the parts' signal dimensions differ: {[b.n_features for b in bound]}")
        try:
            batch = torch.broadcast_shapes(*(b.batch_shape for b in bound))
        except RuntimeError as err:
            raise ValueError(f"the parts' batch/head shapes do not broadcast: {[b.batch_shape for b in bound]}") \
                from err
        stacked = any(b.stacked for b in bound)
        options = {"stacked": stacked, "lipschitz": self.lipschitz_mode, "warm_start": self,
                   "power_iterations": self.power_iterations}
        raw = [b.weight for b in bound]
        n_features, n_atoms = raw[0].shape[-2], sum(w.shape[-1] for w in raw)
        wants_gram = stacked or n_atoms <= 2 * n_features
        if self.normalize_atoms and wants_gram and all(w.dtype in (torch.float32, torch.float64) for w in raw):
            # normalising the concatenation's atoms through the Gram diagonal: P = W D with W the raw concatenation
            # and D = diag(‖w_k‖)⁻¹ read off diag(WᵀW), PᵀP = D WᵀW D; P is formed only if its weight is read
            raw_gram, diagonal = block_gram(raw, batch)
            scale = diagonal.clamp_min(_EPS * _EPS).rsqrt()
            return DenseOperator(blocks=raw, raw_gram=raw_gram, column_scale=scale, **options)
        # normalising the concatenation over the signal dimension is normalising every part's atoms: each part is
        # normalised at its own (possibly smaller, e.g. static) batch shape before it is broadcast
        parts = [l2_normalize(w, dim=-2) for w in raw] if self.normalize_atoms else raw
        gram = block_gram(parts, batch)[0] if wants_gram else None
        return DenseOperator(blocks=parts, gram_matrix=gram, **options)

    # the unbound dictionary acts through its bound form (static parts only)
    def decode(self, u: torch.Tensor) -> torch.Tensor:
        """:math:`Pu = \\sum_i P_i u_i` (static parts; a dynamic concatenation must be bound first)."""
        return self.bind().decode(u)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`P^\\top x`, the parts' analyses concatenated (static parts)."""
        return self.bind().encode(x)

    def gram(self, u: torch.Tensor) -> torch.Tensor:
        return self.bind().gram(u)

    def lipschitz(self) -> torch.Tensor:
        return self.bind().lipschitz()

    def check_signal(self, x: torch.Tensor, name: str = "x") -> None:
        """Every part must accept the signal."""
        for p in self.parts:
            if not p.is_dynamic:
                p.check_signal(x, name)

    def _binds_dense(self) -> bool:
        # dynamic parts (random features) bind to dense operators; static parts are asked
        return all(p.is_dynamic or isinstance(p.bind(), DenseOperator) for p in self.parts)

    def code_shape(self, signal_shape: Sequence[int]) -> tuple[int, ...]:
        shapes = [list(p.code_shape(signal_shape)) for p in self.parts]
        dim = -1 if self._binds_dense() else self.atom_dim
        out = shapes[0]
        out[dim] = sum(s[dim] for s in shapes)
        return tuple(out)

    def probe_shape(self) -> tuple[tuple[int, ...], int]:
        raise ValueError("ConcatDictionary computes its step size on the bound operator: use bind(...).lipschitz()")

    def extra_repr(self) -> str:
        return f"normalize_atoms={self.normalize_atoms}, atom_dim={self.atom_dim}"
