r"""Support polish: the exact minimiser on the face a solver has found, accepted where the KKT conditions certify it.

For an :math:`\ell_1`-type penalty the minimiser of :math:`F(u) = \tfrac12\|Pu - x\|^2 + \lambda R(u)` restricted
to the face of an iterate :math:`u` — its support :math:`S` and the subgradient :math:`s` of :math:`R` there
(:meth:`~sparsecode.thresholds.Threshold.active_face`: :math:`\operatorname{sign}(u)` for the Lasso, :math:`+1` for
the non-negative Lasso) — solves the linear system

.. math:: G_{SS}\,u_S = b_S - \lambda s_S, \qquad u_i = 0 \text{ for } i \notin S,

with :math:`G = P^\top P` and :math:`b = P^\top x`. When the solver has found the right face (the support settles
long before the iterates converge, most of all for sparse codes), this is the minimiser itself: the threshold's KKT
residual at the result, :meth:`~sparsecode.thresholds.Threshold.kkt_residual`, certifies it sample by sample, and a
sample whose residual is within the tolerance is done. A wrong face (a missing or spurious atom, a flipped sign)
leaves a residual of the order of :math:`\lambda` and the sample goes on iterating from where it was.

Cost per polish: a gather of the :math:`k \times k` systems (:math:`k` the largest support among the samples), one
batched Cholesky factorisation and solve, and one gradient product for the certificate. Samples whose support is
larger than :func:`max_polish_support` (where factorising would cost more than a few iterations) are not polished.
"""
from __future__ import annotations

import torch

from ..thresholds import Threshold

__all__ = ["polish_on_support", "max_polish_support", "SupportPolish"]


def max_polish_support(n_atoms: int) -> int:
    r"""The largest support polished for ``n_atoms`` atoms: :math:`k^3/3 \le m^2`, i.e. one factorisation costs
    at most about one gradient product :math:`u\,G` (:math:`k = \lfloor (3m^2)^{1/3} \rfloor`, at least 1)."""
    return max(1, int((3 * n_atoms * n_atoms) ** (1 / 3)))


def polish_on_support(gram: torch.Tensor, b: torch.Tensor, u: torch.Tensor, threshold: Threshold,
                      bound: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Solve :math:`G_{SS} u_S = b_S - \lambda s_S` on the face of each row of ``u`` and certify the result.

    Args:
        gram: :math:`G = P^\top P`, ``(m, m)``.
        b: :math:`P^\top x`, ``(B, m)``.
        u: the current codes, ``(B, m)`` (their faces are read, not their values).
        threshold: an :math:`\ell_1`-type threshold (:meth:`~sparsecode.thresholds.Threshold.active_face` is not
            ``None``), scalar or per-coordinate :math:`\lambda`.
        bound: ``(B,)``, the largest KKT residual accepted per row.

    Returns:
        ``(codes, certified)``: ``(B, m)`` polished codes (the rows of ``u`` where nothing was solved) and ``(B,)``
        bool, the rows whose polished code has a KKT residual :math:`\le` ``bound``.
    """
    face = threshold.active_face(u)
    if face is None:
        raise ValueError(f"{type(threshold).__name__} has no active face to polish on (an l1-type threshold has)")
    support, signs = face
    n_rows, n_atoms = u.shape
    certified = torch.zeros(n_rows, dtype=torch.bool, device=u.device)
    polished = u.clone()
    count = support.sum(dim=1)
    rows = (count <= max_polish_support(n_atoms)).nonzero().squeeze(1)
    if not rows.numel():
        return polished, certified
    support, signs, b_rows = support[rows], signs[rows], b[rows]
    k = int(count[rows].max())
    zero = torch.zeros((), dtype=u.dtype, device=u.device)
    code = torch.zeros_like(b_rows)
    info = torch.zeros(rows.numel(), dtype=torch.int32, device=u.device)
    if k:
        # the support's indices first (topk of a 0/1 mask), padded with off-support ones that solve 1 * 0 = 0
        index = support.to(torch.uint8).topk(k, dim=1).indices
        valid = support.gather(1, index)
        system = gram[index.unsqueeze(2), index.unsqueeze(1)]
        eye = torch.eye(k, dtype=u.dtype, device=u.device)
        system = torch.where(valid.unsqueeze(2) & valid.unsqueeze(1), system, eye)
        lam = threshold._lam_like(u).expand_as(u)[rows].gather(1, index)
        rhs = torch.where(valid, b_rows.gather(1, index) - lam * signs.gather(1, index), zero)
        factor, info = torch.linalg.cholesky_ex(system)
        solution = torch.cholesky_solve(rhs.unsqueeze(2), factor).squeeze(2)
        code.scatter_(1, index, torch.where(valid, solution, zero))
    residual = threshold.kkt_residual(code, code @ gram - b_rows)
    ok = (info == 0) & (residual <= bound[rows])
    certified[rows] = ok
    polished[rows] = torch.where(ok.unsqueeze(1), code, polished[rows])
    return polished, certified


class SupportPolish:
    r"""The polish as a solver loop uses it, with a record per row of the batch: at a check, a row is polished only
    if its face (support and signs) is the one it had at the previous check — a face still changing is not worth a
    factorisation — and the certified codes are kept until :meth:`apply` puts them in the result.

    Args:
        gram: :math:`G = P^\top P`, ``(m, m)``.
        threshold: an :math:`\ell_1`-type threshold.
        n_rows: the batch size (row ids index the records).
    """

    def __init__(self, gram: torch.Tensor, threshold: Threshold, n_rows: int) -> None:
        self.gram, self.threshold = gram, threshold
        self.last_face = torch.zeros(n_rows, gram.shape[-1], dtype=torch.int8, device=gram.device)
        self.done = torch.zeros(n_rows, dtype=torch.bool, device=gram.device)
        self.codes = torch.zeros(n_rows, gram.shape[-1], dtype=gram.dtype, device=gram.device)

    def __call__(self, ids: torch.Tensor, u: torch.Tensor, b: torch.Tensor, bound: torch.Tensor) -> torch.Tensor:
        r"""Polish the rows ``ids`` (codes ``u``, :math:`P^\top x` ``b``, accepted residual ``bound``) whose face
        has not changed since the last call, and record the certified codes.

        Returns:
            the positions in ``ids`` whose polished code is certified (those rows are done).
        """
        support, signs = self.threshold.active_face(u)
        face = torch.where(support, signs, torch.zeros((), dtype=signs.dtype, device=signs.device)).to(torch.int8)
        stable = (face == self.last_face.index_select(0, ids)).all(dim=1)
        self.last_face.index_copy_(0, ids, face)
        tried = stable.nonzero().squeeze(1)
        if not tried.numel():
            return tried
        codes, ok = polish_on_support(self.gram, b.index_select(0, tried), u.index_select(0, tried), self.threshold,
                                      bound.index_select(0, tried))
        certified = tried[ok]
        rows = ids.index_select(0, certified)
        self.codes.index_copy_(0, rows, codes[ok])
        self.done.index_fill_(0, rows, True)
        return certified

    def apply(self, code: torch.Tensor) -> torch.Tensor:
        """``code`` (the whole batch) with the rows certified so far replaced by their polished codes."""
        if not bool(self.done.any()):
            return code
        return torch.where(self.done.unsqueeze(1), self.codes, code)
