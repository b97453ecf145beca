"""Dictionaries :math:`P`, one file each, looked up by name through :data:`DICTIONARIES`."""
from __future__ import annotations

from .base import Dictionary, Operator
from .dct import DCTDictionary
from .dense import DenseOperator
from .linear import LinearDictionary

__all__ = ["Dictionary", "Operator", "DenseOperator", "LinearDictionary", "DCTDictionary", "DICTIONARIES"]

#: name → dictionary class
DICTIONARIES: dict[str, type[Dictionary]] = {"linear": LinearDictionary, "dct": DCTDictionary}
