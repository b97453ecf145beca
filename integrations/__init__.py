"""Integrations of :mod:`sparsecode` with application domains."""
