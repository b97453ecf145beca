"""ImageNet-C scores (Hendrycks & Dietterich, 2019) from per corruption × severity top-1 errors.

With ``E_{c,s}`` the top-1 error (a fraction) under corruption ``c`` at severity ``s``:

* ``E_c = (1/|S|) Σ_s E_{c,s}`` (corruption error),
* ``CE_c = E_c / E^ref_c`` with the reference model's ``E^ref_c`` (AlexNet in the paper),
* ``mCE = 100 · mean_c CE_c`` (lower is better),
* relative mCE = ``100 · mean_c (E_c − E_clean) / (E^ref_c − E^ref_clean)``,
* mean corruption accuracy = ``100 · (1 − mean_{c,s} E_{c,s})``.
"""

from __future__ import annotations

from collections.abc import Mapping

from .imagenet_facts import alexnet_imagenet_c_errors

__all__ = [
    "corruption_errors",
    "mean_corruption_error",
    "relative_mean_corruption_error",
    "mean_corruption_accuracy",
]


def _check_fraction(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be an error fraction in [0, 1], got {value}")
    return value


def corruption_errors(severity_errors: Mapping[str, Mapping[int, float]]) -> dict[str, float]:
    """``E_c = mean_s E_{c,s}`` for every corruption.

    Args:
        severity_errors: corruption → {severity → top-1 error fraction}.

    Returns:
        corruption → ``E_c``.
    """
    result: dict[str, float] = {}
    for corruption, by_severity in severity_errors.items():
        if not by_severity:
            raise ValueError(f"severity_errors[{corruption!r}] has no severities")
        values = [_check_fraction(f"severity_errors[{corruption!r}][{s!r}]", e) for s, e in by_severity.items()]
        result[corruption] = sum(values) / len(values)
    return result


def _shared_corruptions(errors: Mapping[str, float], reference: Mapping[str, float], what: str) -> list[str]:
    if not errors:
        raise ValueError("corruption_errors must not be empty")
    missing = sorted(set(errors) - set(reference))
    if missing:
        raise ValueError(f"{what} has no error for corruptions {missing}; give a reference covering them")
    return list(errors)


def mean_corruption_error(
    corruption_errors: Mapping[str, float], reference_errors: Mapping[str, float] | None = None
) -> float:
    """``mCE = 100 · mean_c E_c / E^ref_c`` over the corruptions of ``corruption_errors``.

    Args:
        corruption_errors: corruption → ``E_c`` (fraction).
        reference_errors: corruption → ``E^ref_c`` (fraction); None uses AlexNet's (the standard mCE).

    Returns:
        The mCE in percent.
    """
    reference = alexnet_imagenet_c_errors() if reference_errors is None else reference_errors
    names = _shared_corruptions(corruption_errors, reference, "reference_errors")
    ratios = []
    for name in names:
        denominator = _check_fraction(f"reference_errors[{name!r}]", reference[name])
        if denominator == 0:
            raise ValueError(f"reference_errors[{name!r}] is 0; CE_c would divide by zero")
        ratios.append(_check_fraction(f"corruption_errors[{name!r}]", corruption_errors[name]) / denominator)
    return 100.0 * sum(ratios) / len(ratios)


def relative_mean_corruption_error(
    corruption_errors: Mapping[str, float],
    clean_error: float,
    reference_errors: Mapping[str, float],
    reference_clean_error: float,
) -> float:
    """Relative mCE ``= 100 · mean_c (E_c − E_clean) / (E^ref_c − E^ref_clean)``.

    Args:
        corruption_errors: corruption → ``E_c`` of the model (fraction).
        clean_error: The model's clean error ``E_clean`` (fraction).
        reference_errors: corruption → ``E^ref_c`` of the reference model (fraction).
        reference_clean_error: The reference model's clean error (fraction).

    Returns:
        The relative mCE in percent.
    """
    clean = _check_fraction("clean_error", clean_error)
    reference_clean = _check_fraction("reference_clean_error", reference_clean_error)
    names = _shared_corruptions(corruption_errors, reference_errors, "reference_errors")
    ratios = []
    for name in names:
        gap = _check_fraction(f"reference_errors[{name!r}]", reference_errors[name]) - reference_clean
        if gap == 0:
            raise ValueError(f"reference_errors[{name!r}] equals reference_clean_error; relative CE divides by zero")
        ratios.append((_check_fraction(f"corruption_errors[{name!r}]", corruption_errors[name]) - clean) / gap)
    return 100.0 * sum(ratios) / len(ratios)


def mean_corruption_accuracy(severity_errors: Mapping[str, Mapping[int, float]]) -> float:
    """``100 · (1 − mean_{c,s} E_{c,s})``: top-1 accuracy averaged over every corruption and severity.

    Args:
        severity_errors: corruption → {severity → top-1 error fraction}.

    Returns:
        The mean corruption accuracy in percent.
    """
    values = [
        _check_fraction(f"severity_errors[{c!r}][{s!r}]", e)
        for c, by_severity in severity_errors.items()
        for s, e in by_severity.items()
    ]
    if not values:
        raise ValueError("severity_errors must hold at least one corruption × severity error")
    return 100.0 * (1.0 - sum(values) / len(values))
