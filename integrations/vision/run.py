"""``python -m integrations.vision.run`` — is this attention more robust?

Two modes:

* **Built-in demo** (no data arguments): generates a small procedural object-recognition suite (objects with
  ground-truth masks and fixation points on real textures, written in the real benchmark layouts), trains the
  requested model(s) briefly on the CPU (cached), trains a small CNN as the mCE reference (the demo's AlexNet), and
  runs the demo counterpart of every benchmark of the paper: clean, corruptions (mCE), renditions, sketches, PGD,
  FGSM, domain generalisation, attention-map segmentation and fixation NSS. These are demo data, not ImageNet.
* **Real evaluation** (``--data-root`` or per-data-set flags, and ``--checkpoint``): the paper's suite on the real
  data sets, with our own checkpoint (safetensors + JSON) or an original VARS checkpoint.

Results are stored per (model, checkpoint digest, benchmark, entry) with atomic writes: an interrupted run resumes
where it stopped. Outputs: ``results.json``, ``results.md``, ``robustness.png``, ``imagenet_c.png`` and, in demo mode,
``attention_maps.png`` (attention maps under clean / noise / blur / weather corruption, like the paper's Fig. 3)
and each model's training curve.
"""
from __future__ import annotations

import argparse
import functools
import shutil
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main", "build_parser", "DEMO_BENCHMARKS", "REAL_BENCHMARKS"]

#: benchmarks that have a demo counterpart (the demo has no ImageNet-A analogue)
DEMO_BENCHMARKS = ("clean", "imagenet_c", "imagenet_r", "imagenet_sketch", "pgd", "fgsm", "pacs",
                   "voc_segmentation", "mit1003_nss")
#: the paper's full suite
REAL_BENCHMARKS = ("clean", "imagenet_c", "imagenet_r", "imagenet_sketch", "imagenet_a", "pgd", "fgsm", "pacs",
                   "voc_segmentation", "mit1003_nss")
#: the demo's model size (the "tiny" width with half the depth and head_dim 32, so VARS trains in minutes on a CPU)
DEMO_MODEL_KWARGS = {"deit": {"patch_size": 8, "depth": 6, "num_heads": 6},
                     "gfnet": {"patch_size": 8, "depth": 6, "num_heads": 8}}
#: demo suite sizes: ``full`` (the default) and ``quick`` (seconds; for tests and a first look)
DEMO_SCALES = {
    "full": {},
    "quick": dict(n_train_per_class=16, n_test_per_class=4, n_corrupted_per_class=1, n_rendition_per_class=3,
                  n_sketch_per_class=3, n_pacs_per_class=4, n_voc_images=6, n_saliency_images=6, n_fixations=10),
}
#: epochs of the demo's PACS fine-tuning (per held-out domain)
DEMO_PACS_EPOCHS = 1
#: the demo's mCE reference model (its "AlexNet")
DEMO_REFERENCE_MODEL = "resnet10t"
def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m integrations.vision.run``."""
    p = argparse.ArgumentParser(
        prog="python -m integrations.vision.run",
        description="Run the VARS robustness suite: on the built-in demo data (default) or on the real data sets.",
    )
    p.add_argument("--model", default="deit_vars_sd", help="registered model name (default: deit_vars_sd)")
    p.add_argument("--compare", default=None,
                   help="comma-separated model names to evaluate side by side (a miniature Table 2)")
    p.add_argument("--variant", default=None, choices=("original", "paper"),
                   help="VARS configuration for VARS models (default: the model's own)")
    p.add_argument("--benchmarks", default=None,
                   help=f"comma-separated subset of {', '.join(REAL_BENCHMARKS)} (default: all available)")
    p.add_argument("--out", default=None, help="output folder (default: runs/demo or runs/eval)")
    p.add_argument("--cache-dir", default=None,
                   help="where demo data and demo models are cached (default: $SPARSECODE_CACHE or ~/.cache/sparsecode)")
    p.add_argument("--epochs", type=int, default=None, help="demo training epochs (default: the demo preset's)")
    p.add_argument("--demo-scale", default="full", choices=sorted(DEMO_SCALES),
                   help="size of the built-in demo suite (quick: a few images per class, for a smoke test)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if _cuda_available() else "cpu")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--max-images", type=int, default=None, help="cap on images per benchmark entry")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    real = p.add_argument_group("real evaluation")
    real.add_argument("--checkpoint", default=None,
                      help="our checkpoint (.safetensors with its .json) or an original VARS .pth checkpoint")
    real.add_argument("--image-size", type=int, default=224)
    from .robustness.data_root import add_data_arguments

    return add_data_arguments(p)


def _cuda_available() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return False


def _split(text: str | None) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()] if text else []


def _cache_dir(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    env = os.environ.get("SPARSECODE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "sparsecode"


def _check_models(names: Sequence[str]) -> None:
    from . import model_names

    valid = set(model_names())
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise SystemExit(f"error: unknown model(s) {', '.join(unknown)}; valid names: {', '.join(sorted(valid))}")


def _benchmarks(arg: str | None, available: Sequence[str]) -> list[str]:
    chosen = _split(arg) or list(available)
    unknown = [b for b in chosen if b not in available]
    if unknown:
        raise SystemExit(f"error: unknown or unavailable benchmark(s) {', '.join(unknown)} in this mode; "
                         f"choose from {', '.join(available)}")
    return chosen


def _normalizer(mean: Sequence[float], std: Sequence[float]):
    import torch

    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)

    def normalize(images: torch.Tensor) -> torch.Tensor:
        return (images - m.to(images)) / s.to(images)

    return normalize


def _attention_fn(model, normalize):
    from .attention_maps import attention_layers, attention_map

    if not attention_layers(model):
        return None
    return lambda images: attention_map(model, normalize(images))


def _model_kwargs(name: str, variant: str | None, *, demo: bool = False) -> dict[str, Any]:
    """Constructor options: the VARS ``variant``, and for the demo :data:`DEMO_MODEL_KWARGS` (a stem of stride 8 for
    the 64-px images — an 8×8 token grid instead of 4×4 — and a smaller depth)."""
    from .models import describe_model

    family, attention, _ = describe_model(name)
    kwargs: dict[str, Any] = {}
    if variant is not None and attention.startswith("vars"):
        kwargs["variant"] = variant
    if demo:
        kwargs.update(DEMO_MODEL_KWARGS.get(family, {}))
    return kwargs


# ----------------------------------------------------------------------------------------------------------------
# demo mode
# ----------------------------------------------------------------------------------------------------------------
def run_demo(args: argparse.Namespace) -> Path:
    """Generate the demo suite, train (cached) and evaluate every requested model; returns the output folder."""
    import torch

    from .demo import generate_demo_suite
    from .robustness import checkpoint_digest, run_suite
    from .robustness.imagenet_facts import IMAGENET_MEAN, IMAGENET_STD
    from .training import finetune_pacs, preset, train_demo

    models = _split(args.compare) or [args.model]
    _check_models(models)
    benchmarks = _benchmarks(args.benchmarks, DEMO_BENCHMARKS)
    cache = _cache_dir(args.cache_dir)
    out = Path(args.out or "runs/demo")
    out.mkdir(parents=True, exist_ok=True)
    progress = not args.no_progress
    torch.manual_seed(args.seed)
    print("=" * 88)
    print("DEMO DATA: a procedurally generated object-recognition suite (not ImageNet). Numbers show that every")
    print("benchmark runs end to end and how the attention types compare on it; they are not the paper's numbers.")
    print("=" * 88, flush=True)
    t0 = time.perf_counter()
    scale = DEMO_SCALES[args.demo_scale]
    info = generate_demo_suite(cache / f"demo-data-{args.demo_scale}", seed=args.seed, progress=progress, **scale)
    class_names = list(info.class_names)
    size = int(info.image_size)
    normalize = _normalizer(IMAGENET_MEAN, IMAGENET_STD)
    common = dict(data_root=info.root, out_dir=out, class_names=class_names, image_size=size, resize=False,
                  mean=IMAGENET_MEAN, std=IMAGENET_STD, device=args.device,
                  batch_size=args.batch_size or 100, num_workers=args.num_workers, max_images=args.max_images,
                  seed=args.seed, progress=progress)

    reference: dict[str, float] | None = None
    reference_clean: float | None = None
    if "imagenet_c" in benchmarks:
        print(f"\n[reference] training {DEMO_REFERENCE_MODEL}, the mCE normaliser (the demo's AlexNet)", flush=True)
        ref = train_demo(DEMO_REFERENCE_MODEL, info.root, cache / f"demo-models-{args.demo_scale}" / DEMO_REFERENCE_MODEL,
                         epochs=args.epochs, img_size=size, seed=args.seed, progress=progress)
        ref_results = run_suite(ref.to(args.device), model_name=f"{DEMO_REFERENCE_MODEL} (reference)",
                                checkpoint_digest=checkpoint_digest(ref), benchmarks=["clean", "imagenet_c"], **common)
        reference = {c: float(v) for c, v in ref_results["imagenet_c"]["corruption_errors"].items()}
        reference_clean = 1.0 - float(ref_results["clean"]["top1"]) / 100.0

    trained = {}
    for name in models:
        run_dir = cache / f"demo-models-{args.demo_scale}" / name
        print(f"\n[{name}] training on the demo data (cached in {run_dir})", flush=True)
        kwargs = _model_kwargs(name, args.variant, demo=True)
        model = train_demo(name, info.root, run_dir, epochs=args.epochs, img_size=size,
                           seed=args.seed, progress=progress, **kwargs).to(args.device)
        trained[name] = model
        curve = run_dir / "training_curve.png"
        if curve.exists():
            shutil.copyfile(curve, out / f"training_curve_{name}.png")
        # a short PACS-style fine-tune per held-out domain (the paper fine-tunes longer on real PACS)
        finetune = functools.partial(finetune_pacs, config=preset("pacs", img_size=size, epochs=DEMO_PACS_EPOCHS,
                                                                  warmup_epochs=0, seed=args.seed, num_workers=0),
                                    progress=False)
        run_suite(model, model_name=name, checkpoint_digest=checkpoint_digest(model), benchmarks=benchmarks,
                  attention_fn=_attention_fn(model, normalize), finetune_fn=finetune,
                  imagenet_c_reference=reference, reference_clean_error=reference_clean, **common)

    figure = out / "attention_maps.png"
    try:
        _attention_figure(trained, info.root, figure, normalize, size, args.seed)
    except ValueError as err:  # a model without attention-map support: skip the figure, say why
        print(f"(attention figure skipped: {err})")
    elapsed = time.perf_counter() - t0
    table = (out / "results.md").read_text() if (out / "results.md").exists() else "(no results)"
    print("\n" + table)
    print(f"Demo finished in {elapsed / 60:.1f} min. Outputs in {out.resolve()}:")
    for f in sorted(out.iterdir()):
        print(f"  {f.name}")
    print("These are DEMO data (procedural shapes on real textures), not ImageNet.")
    return out


def _attention_figure(models: dict, data_root: Path, path: Path, normalize, size: int, seed: int) -> None:
    """Attention maps of every model on a few test images under clean / noise / blur / weather (paper Fig. 3).

    Columns are the conditions; for each image, one row shows the (corrupted) inputs and one row per model overlays
    its head-averaged last-layer attention map (bilinearly upsampled from the token grid).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import torch
    from PIL import Image

    from .attention_maps import attention_layers, attention_map
    from .corruptions import corrupt

    models = {n: m for n, m in models.items() if attention_layers(m)}
    if not models:
        raise ValueError("no model exposes attention maps")
    val = Path(data_root) / "val"
    files = [sorted(d.iterdir())[0] for d in sorted(val.iterdir()) if d.is_dir()][:3]
    conditions = [("clean", None), ("gaussian noise", "gaussian_noise"), ("defocus blur", "defocus_blur"),
                  ("fog", "fog")]
    n_rows = len(files) * (1 + len(models))
    fig, axes = plt.subplots(n_rows, len(conditions), figsize=(1.9 * len(conditions), 1.9 * n_rows), squeeze=False)
    for f, file in enumerate(files):
        base = np.asarray(Image.open(file).convert("RGB").resize((size, size)))
        top = f * (1 + len(models))
        for c, (label, corruption) in enumerate(conditions):
            img = base if corruption is None else corrupt(base, corruption, 3, seed=seed)
            x = torch.from_numpy(np.array(img)).permute(2, 0, 1).float().div(255)[None]
            axes[top, c].imshow(img)
            if f == 0:
                axes[top, c].set_title(label, fontsize=8)
            for r, (name, model) in enumerate(models.items(), start=1):
                device = next(model.parameters()).device
                amap = attention_map(model, normalize(x.to(device)))[0].float().cpu().numpy()
                ax = axes[top + r, c]
                ax.imshow(img)
                ax.imshow(amap, cmap="jet", alpha=0.55, interpolation="bilinear", extent=(0, size, size, 0))
                if c == 0:
                    ax.set_ylabel(name, fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Attention of the mean token, last layer — demo data", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------------------------
# real mode
# ----------------------------------------------------------------------------------------------------------------
def _load_model(args: argparse.Namespace):
    from . import convert_original_state_dict, create_model, load_checkpoint, load_original_checkpoint

    path = Path(args.checkpoint)
    if not path.exists():
        raise SystemExit(f"error: --checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        return load_checkpoint(path)
    model = create_model(args.model, **_model_kwargs(args.model, args.variant or "original"))
    state = load_original_checkpoint(path)
    model.load_state_dict(convert_original_state_dict(state, args.model))
    return model


def run_real(args: argparse.Namespace) -> Path:
    """Evaluate ``--checkpoint`` on the real data sets; returns the output folder."""
    from .robustness import checkpoint_digest, run_suite
    from .robustness.data_root import data_root_from_args
    from .robustness.imagenet_facts import IMAGENET_MEAN, IMAGENET_STD
    from .training import finetune_pacs

    if args.checkpoint is None:
        raise SystemExit("error: real evaluation needs --checkpoint (a trained model); "
                         "run without data arguments for the built-in demo")
    _check_models([args.model])
    root = data_root_from_args(args)
    benchmarks = _benchmarks(args.benchmarks, REAL_BENCHMARKS)
    model = _load_model(args).to(args.device).eval()
    out = Path(args.out or "runs/eval")
    normalize = _normalizer(IMAGENET_MEAN, IMAGENET_STD)
    run_suite(model, model_name=args.model, checkpoint_digest=checkpoint_digest(Path(args.checkpoint)),
              data_root=root, benchmarks=benchmarks, out_dir=out, image_size=args.image_size,
              attention_fn=_attention_fn(model, normalize), finetune_fn=finetune_pacs, device=args.device,
              batch_size=args.batch_size or 64, num_workers=args.num_workers, max_images=args.max_images,
              seed=args.seed, progress=not args.no_progress)
    print((out / "results.md").read_text())
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = build_parser().parse_args(argv)
    real = any(v is not None for k, v in vars(args).items() if k == "data_root" or k.startswith("data_"))
    try:
        import integrations.vision  # noqa: F401  (registers the models with timm)
    except ImportError as err:
        print(f"error: the vision integration needs its extra: pip install -e '.[vision]' ({err})", file=sys.stderr)
        return 2
    (run_real if real else run_demo)(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
