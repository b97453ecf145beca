r"""The Gram matrix of a column-block matrix, written block by block into one buffer, as one autograd node.

For :math:`W = [P_1, \dots, P_k]` (``P_i`` of shape ``(*batch_i, n, m_i)``, batch shapes broadcasting to ``batch``)

.. math:: R = W^\top W, \quad R_{ij} = P_i^\top P_j, \qquad \bar P_i = \textstyle\sum_j P_j\, S_{ji},
          \quad S = \bar R + \bar R^\top + 2 \operatorname{diag}(\bar d)

with :math:`d = \operatorname{diag} R` returned beside :math:`R` (its derivative :math:`\bar d` enters :math:`S`'s
diagonal, not a full-size matrix). Only the blocks with :math:`j \ge i` are multiplied; :math:`R_{ji}` is the
transposed copy. A block shared across leading batch entries (e.g. static atoms beside per-image random features)
is multiplied once per leading entry, never copied, and a block of two shared parts once in all.

Against concatenating products (the autograd composition :func:`block_gram_composed`) this writes :math:`R` once
instead of the blocks, the rows and the whole (three full-size copies), and accumulates every :math:`\bar P_i` in one
buffer by multiply-adds instead of a buffer per product and their sums.

The node covers parts whose batch shape is either ``batch`` or one common proper suffix of it, of one floating
dtype, outside autocast and ``torch.compile``; :func:`block_gram` composes the products with autograd otherwise, and a backward pass that
is itself differentiated replays that composition (:mod:`sparsecode._replay`).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from .._replay import replay_backward
from .dense import cross_of, gram_of

__all__ = ["block_gram", "block_gram_composed"]


def block_gram_composed(weights: Sequence[torch.Tensor], batch: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    r"""``(R, diag R)`` of :math:`W = [P_1, \dots, P_k]` from autograd-recorded products and concatenations (blocks
    :math:`j \ge i` multiplied at the broadcast batch shape of the two parts, :math:`R_{ji} = R_{ij}^\top`, the
    diagonal read off the diagonal blocks). The reference form of :func:`block_gram`.

    Args:
        weights: the parts ``(*batch_i, n, m_i)``.
        batch: the broadcast batch shape of all parts.
    """
    k = len(weights)
    blocks: list[list[torch.Tensor | None]] = [[None] * k for _ in range(k)]
    diagonals = []
    for i in range(k):
        for j in range(i, k):
            block = gram_of(weights[i]) if j == i else cross_of(weights[i], weights[j])
            broadcast = tuple(block.shape[:-2]) != tuple(batch)  # (a no-op expand is an autograd node all the same)
            if j == i:
                diagonal = block.diagonal(dim1=-2, dim2=-1)
                diagonals.append(diagonal.expand(batch + diagonal.shape[-1:]) if broadcast else diagonal)
            blocks[i][j] = block.expand(batch + tuple(block.shape[-2:])) if broadcast else block
            if j != i:
                blocks[j][i] = blocks[i][j].transpose(-1, -2)
    return torch.cat([torch.cat(row, dim=-1) for row in blocks], dim=-2), torch.cat(diagonals, dim=-1)


def _layout(weights: Sequence[torch.Tensor], batch: tuple[int, ...]) -> tuple[int, int, tuple[bool, ...]] | None:
    """``(lead, inner, shared)`` when every part's batch shape is ``batch`` or one common proper suffix of it
    (``shared[i]``: part ``i`` has the suffix, ``inner`` entries, repeated over ``lead`` leading entries); ``None``
    when the parts do not fit the node."""
    dtypes = {w.dtype for w in weights}
    if len(dtypes) != 1 or dtypes.pop() not in (torch.float32, torch.float64):
        return None
    if len({w.device for w in weights}) != 1 or torch.is_autocast_enabled(weights[0].device.type):
        return None
    suffixes = {tuple(w.shape[:-2]) for w in weights if tuple(w.shape[:-2]) != tuple(batch)}
    if len(suffixes) > 1:
        return None
    inner_shape = suffixes.pop() if suffixes else tuple(batch)
    if len(inner_shape) > len(batch) or tuple(batch[len(batch) - len(inner_shape):]) != inner_shape:
        return None
    inner, total = math.prod(inner_shape), math.prod(batch)
    if inner == 0 or total == 0:
        return None
    return total // inner, inner, tuple(tuple(w.shape[:-2]) != tuple(batch) for w in weights)


def _product_into(out: torch.Tensor, a: torch.Tensor, b: torch.Tensor, accumulate: bool) -> None:
    """``out = a @ b`` (or ``out += a @ b``) for batched matrices of one batch size (``out`` may be a strided view)."""
    if accumulate:
        out.baddbmm_(a, b)
    else:
        torch.bmm(a, b, out=out)


class _BlockGram(torch.autograd.Function):
    @staticmethod
    def forward(ctx, batch: tuple[int, ...], lead: int, inner: int, shared: tuple[bool, ...],
                *weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = weights[0].shape[-2]
        sizes = [w.shape[-1] for w in weights]
        offsets = [sum(sizes[:i]) for i in range(len(sizes))]
        m = sum(sizes)
        # full parts as (lead, inner, n, m_i), shared parts as (inner, n, m_i); R as (lead, inner, m, m)
        parts = [w.reshape(inner, n, s) if sh else w.reshape(lead, inner, n, s)
                 for w, s, sh in zip(weights, sizes, shared)]
        gram = weights[0].new_empty((lead, inner, m, m))
        flat = gram.view(lead * inner, m, m)
        for i, (pi, si, oi) in enumerate(zip(parts, sizes, offsets)):
            for j in range(i, len(parts)):
                pj, sj, oj = parts[j], sizes[j], offsets[j]
                rows, cols = slice(oi, oi + si), slice(oj, oj + sj)
                if not shared[i] and not shared[j]:
                    torch.bmm(pi.reshape(-1, n, si).transpose(-1, -2), pj.reshape(-1, n, sj),
                              out=flat[:, rows, cols])
                elif shared[i] and shared[j]:  # once for all leading entries
                    gram[:, :, rows, cols] = torch.bmm(pi.transpose(-1, -2), pj)
                else:  # one full, one shared part: a product per leading entry, written where the full part is left
                    full, other = (pi, pj) if not shared[i] else (pj, pi)
                    r, c = (rows, cols) if not shared[i] else (cols, rows)
                    for lead_index in range(lead):
                        torch.bmm(full[lead_index].transpose(-1, -2), other, out=gram[lead_index, :, r, c])
                    if shared[i]:
                        gram[:, :, rows, cols] = gram[:, :, cols, rows].transpose(-1, -2)
                        continue
                if j != i:
                    gram[:, :, cols, rows] = gram[:, :, rows, cols].transpose(-1, -2)
        gram = gram.view(tuple(batch) + (m, m))
        diagonal = gram.diagonal(dim1=-2, dim2=-1).clone()
        ctx.save_for_backward(*weights)
        ctx.layout = (tuple(batch), lead, inner, shared)
        return gram, diagonal

    @staticmethod
    def backward(ctx, grad_gram: torch.Tensor | None, grad_diagonal: torch.Tensor | None):
        weights = ctx.saved_tensors
        batch, lead, inner, shared = ctx.layout
        needs = ctx.needs_input_grad[4:]
        if torch.is_grad_enabled():  # a graph of the backward is wanted: differentiate the composition
            present = tuple(k for k, g in enumerate((grad_gram, grad_diagonal)) if g is not None)
            grads = replay_backward(_composed_outputs, weights, needs,
                                    tuple((grad_gram, grad_diagonal)[k] for k in present), batch, present)
            return (None, None, None, None) + tuple(grads)
        n = weights[0].shape[-2]
        sizes = [w.shape[-1] for w in weights]
        offsets = [sum(sizes[:i]) for i in range(len(sizes))]
        m = sum(sizes)
        g = None if grad_gram is None else grad_gram.reshape(lead, inner, m, m)
        d = None if grad_diagonal is None else grad_diagonal.reshape(lead, inner, m)
        parts = [w.reshape(inner, n, s) if sh else w.reshape(lead, inner, n, s)
                 for w, s, sh in zip(weights, sizes, shared)]
        # each gradient is allocated in its part's own shape (returned as it is, not as a view: autograd adds a
        # part's other derivatives into it in place) and written through a (lead, inner, n, m_i) view
        grads = [weights[i].new_empty(weights[i].shape) if need else None for i, need in enumerate(needs)]
        outs = [None if grad is None else grad.view((inner, n, sizes[i]) if shared[i] else (lead, inner, n, sizes[i]))
                for i, grad in enumerate(grads)]
        written = [False] * len(weights)  # whether a shared part's gradient holds a first product
        # S = Ḡ + Ḡᵀ + 2 diag(d̄) one leading entry at a time, in one reused buffer (a full-size S would be a
        # Gram-sized allocation and a slow transposed pass over all of it); the blocks S_ji of two shared parts are
        # summed over the leading entries and applied once at the end
        sym = weights[0].new_empty((inner, m, m))
        shared_sums: dict[tuple[int, int], torch.Tensor] = {}
        for lead_index in range(lead):
            if g is None:
                sym.zero_()
            else:
                torch.add(g[lead_index], g[lead_index].transpose(-1, -2), out=sym)
            if d is not None:
                sym.diagonal(dim1=-2, dim2=-1).add_(d[lead_index], alpha=2)
            for i, (si, oi) in enumerate(zip(sizes, offsets)):
                if outs[i] is None:
                    continue
                for j, (pj, sj, oj) in enumerate(zip(parts, sizes, offsets)):
                    block = sym[:, oj:oj + sj, oi:oi + si]  # S_ji, (inner, m_j, m_i)
                    left = pj if shared[j] else pj[lead_index]
                    if not shared[i]:  # this leading entry's slice: written by the first term, accumulated after
                        _product_into(outs[i][lead_index], left, block, j > 0)
                    elif not shared[j]:
                        _product_into(outs[i], left, block, written[i])
                        written[i] = True
                    else:
                        total = shared_sums.get((i, j))
                        shared_sums[(i, j)] = block.clone() if total is None else total.add_(block)
        for (i, j), total in shared_sums.items():
            _product_into(outs[i], parts[j], total, written[i])
            written[i] = True
        return (None, None, None, None) + tuple(grads)


def _composed_outputs(*args):
    """The outputs ``present`` (indices into ``(R, diag R)``) of :func:`block_gram_composed`, the parts given as
    positional arguments (for :func:`replay_backward`)."""
    *weights, batch, present = args
    outputs = block_gram_composed(weights, batch)
    return tuple(outputs[k] for k in present)


def block_gram(weights: Sequence[torch.Tensor], batch: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    r"""``(R, diag R)`` of :math:`W = [P_1, \dots, P_k]`, shapes ``(*batch, m, m)`` and ``(*batch, m)`` (see the
    module docstring): one node where the parts fit it, the autograd composition otherwise.

    Args:
        weights: the parts ``(*batch_i, n, m_i)``, batch shapes broadcasting to ``batch``.
        batch: the broadcast batch shape of all parts.
    """
    # (under torch.compile the composition is traced instead: the compiler fuses the concatenations itself, and it
    # does not trace products written into views)
    layout = None if torch.compiler.is_compiling() else _layout(weights, tuple(batch))
    if layout is None:
        return block_gram_composed(weights, tuple(batch))
    return _BlockGram.apply(tuple(batch), *layout, *weights)
