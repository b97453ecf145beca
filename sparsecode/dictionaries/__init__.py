"""Dictionaries :math:`P`, one file each, looked up by name through :data:`DICTIONARIES`."""
from __future__ import annotations

from .base import Dictionary, Operator
from .concat import ConcatDictionary, ConcatOperator
from .conv import ConvDictionary
from .dct import DCTDictionary
from .dense import DenseOperator
from .fft import GRAM_MODES, FFTConvDictionary, FFTConvOperator, hermitian_projection
from .linear import LinearDictionary
from .performer import PerformerDictionary, positive_random_features

__all__ = [
    "Dictionary",
    "Operator",
    "DenseOperator",
    "LinearDictionary",
    "DCTDictionary",
    "ConvDictionary",
    "FFTConvDictionary",
    "FFTConvOperator",
    "GRAM_MODES",
    "hermitian_projection",
    "PerformerDictionary",
    "positive_random_features",
    "ConcatDictionary",
    "ConcatOperator",
    "DICTIONARIES",
]

#: name → dictionary class
DICTIONARIES: dict[str, type[Dictionary]] = {
    "linear": LinearDictionary,
    "dct": DCTDictionary,
    "conv": ConvDictionary,
    "fft_conv": FFTConvDictionary,
    "performer": PerformerDictionary,
    "concat": ConcatDictionary,
}
