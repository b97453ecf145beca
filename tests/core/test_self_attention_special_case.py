"""Paper §3.4, Eq. 14: one Euler step of the VARS dynamics with the Performer dictionary, from Z = X, with λ = 0, is
self-attention with the kernel Φ(X)Φ(X)ᵀ plus the residual."""
from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsecode import LCA, PerformerDictionary, SoftThreshold, SparseReconstruction, positive_random_features


@settings(max_examples=10, deadline=None)
@given(batch=st.integers(1, 3), heads=st.integers(1, 3), n_tok=st.integers(1, 8), head_dim=st.integers(1, 5),
       m=st.integers(1, 9), normalize_atoms=st.booleans(), seed=st.integers(0, 2**16))
def test_one_vars_step_from_x_is_performer_self_attention(batch, heads, n_tok, head_dim, m, normalize_atoms, seed):
    g = torch.Generator().manual_seed(seed)
    dictionary = PerformerDictionary(heads, head_dim, m, normalize_atoms=normalize_atoms, seed=seed,
                                     dtype=torch.float64)
    layer = SparseReconstruction(dictionary, solver=LCA(form="vars", max_iter=1, dt=1.0),
                                 threshold=SoftThreshold(0.0), residual=True)
    X = 0.5 * torch.randn(batch, heads, n_tok, head_dim, generator=g, dtype=torch.float64)
    # X builds the dictionary (context) and is the signal: per head its channels X^μ over the tokens, (B, H, d, N)
    Z = layer(X.transpose(-1, -2), context=X).transpose(-1, -2)
    phi = positive_random_features(X, dictionary.projection)
    if normalize_atoms:
        phi = phi / phi.norm(dim=-2, keepdim=True)
    expected = phi @ phi.transpose(-1, -2) @ X + X  # Eq. 14, per head
    assert torch.allclose(Z, expected, rtol=1e-12, atol=1e-12)
