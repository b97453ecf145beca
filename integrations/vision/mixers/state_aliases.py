"""State-dict key aliases: a module built from library parts saves and loads under the original code's key names.

A VARS mixer holds its tensors inside ``sparsecode`` parts (e.g. the Performer projection is
``sparse.dictionary.projection``) while the released checkpoints store them flat (``rand_matrix``).
:func:`alias_state_dict_keys` installs two hooks on a module so that, relative to its prefix,

* ``state_dict()`` reports every internal key ``k_int`` (or key under the internal prefix) as the
  public key ``k_pub``, reshaped to the public shape when one is given, and omits *hidden* keys
  (fixed hyper-parameters such as a threshold's λ, which the original code did not store);
* ``load_state_dict()`` accepts public keys, renames them back and reshapes them to the internal
  tensor's shape, and fills hidden keys with the module's current values.

An alias ``public → internal`` applies to the key itself and to every key below it
(``"v" → "attn.v"`` also maps ``v.weight`` → ``attn.v.weight``). Hooks nest: an outer module's aliases
see the public names of its children.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["alias_state_dict_keys"]


def _match(key: str, name: str) -> str | None:
    """The remainder of ``key`` below ``name`` ('' for the key itself), or ``None`` when it is not under it."""
    if key == name:
        return ""
    if key.startswith(name + "."):
        return key[len(name) :]
    return None


def _translate(key: str, pairs: Sequence[tuple[str, str]]) -> tuple[str, str] | None:
    """``(new_key, matched_source)`` for the first pair ``(source, target)`` that ``key`` falls under."""
    for source, target in pairs:
        rest = _match(key, source)
        if rest is not None:
            return target + rest, source
    return None


def alias_state_dict_keys(
    module: nn.Module,
    aliases: Mapping[str, str],
    *,
    hidden: Sequence[str] = (),
    public_shapes: Mapping[str, Sequence[int]] | None = None,
) -> None:
    """Make ``module`` save and load the internal keys ``aliases[public]`` under the names ``public``.

    For each pair, a state-dict key ``prefix + internal + rest`` is written as ``prefix + public + rest``
    and read back the other way; keys listed in ``hidden`` (internal names, below ``prefix``) are left
    out of ``state_dict()`` and taken from the module when loading. ``public_shapes[public]`` reshapes
    that (exact-key) tensor on save, and loading reshapes it back to the internal tensor's shape.

    Args:
        module: the module whose (relative) keys are aliased.
        aliases: public key → internal key (each internal key must name a tensor or submodule of ``module``).
        hidden: internal keys omitted from the state dict (fixed quantities the original code did not store).
        public_shapes: public key → the shape the original code stores it with.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be an nn.Module, got {type(module).__name__}")
    pairs_are_strings = isinstance(aliases, Mapping) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in aliases.items()
    )
    if not pairs_are_strings:
        raise TypeError(f"aliases must map str to str, got {aliases!r}")
    shapes = {key: tuple(int(s) for s in shape) for key, shape in (public_shapes or {}).items()}
    unknown = sorted(set(shapes) - set(aliases))
    if unknown:
        raise ValueError(f"public_shapes names keys that are not aliases: {unknown}")
    to_public = [(internal, public) for public, internal in aliases.items()]
    to_internal = [(public, internal) for public, internal in aliases.items()]
    hidden_keys = tuple(hidden)

    def save_hook(mod: nn.Module, state_dict: dict[str, Any], prefix: str, local_metadata: Any) -> None:
        for key in [k for k in state_dict if k.startswith(prefix)]:
            relative = key[len(prefix) :]
            if relative in hidden_keys:
                del state_dict[key]
                continue
            found = _translate(relative, to_public)
            if found is None:
                continue
            public, _ = found
            value = state_dict.pop(key)
            if public in shapes and value is not None:
                value = value.reshape(shapes[public])
            state_dict[prefix + public] = value

    def load_hook(
        mod: nn.Module,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: Any,
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        for key in [k for k in state_dict if k.startswith(prefix)]:
            found = _translate(key[len(prefix) :], to_internal)
            if found is None:
                continue
            internal, source = found
            value = state_dict.pop(key)
            if key[len(prefix) :] == source and source in shapes:
                target = _internal_tensor(mod, internal)
                if target is not None and value.numel() == target.numel():
                    value = value.reshape(target.shape)
            state_dict[prefix + internal] = value
        for name in hidden_keys:
            tensor = _internal_tensor(mod, name)
            if tensor is not None and prefix + name not in state_dict:
                state_dict[prefix + name] = tensor.detach()
        load_prefix[:] = [prefix]

    def report_public_names(mod: nn.Module, incompatible_keys: Any) -> None:
        # missing keys are reported under the names the caller's state dict should have used
        prefix = load_prefix[0] if load_prefix else ""
        for index, key in enumerate(incompatible_keys.missing_keys):
            if key.startswith(prefix):
                found = _translate(key[len(prefix) :], to_public)
                if found is not None:
                    incompatible_keys.missing_keys[index] = prefix + found[0]

    load_prefix: list[str] = []
    module.register_state_dict_post_hook(save_hook)
    module.register_load_state_dict_pre_hook(load_hook)
    module.register_load_state_dict_post_hook(report_public_names)


def _internal_tensor(module: nn.Module, dotted: str) -> torch.Tensor | None:
    """The parameter or buffer ``dotted`` (e.g. ``"sparse.threshold.lam_param"``) of ``module``, if any."""
    owner_path, _, leaf = dotted.rpartition(".")
    try:
        owner = module.get_submodule(owner_path) if owner_path else module
    except AttributeError:
        return None
    tensor = getattr(owner, leaf, None)
    return tensor if isinstance(tensor, torch.Tensor) else None
