"""Command line: ``python -m mslib train --model unet --data synthetic-polyp --profile quick --out runs/unet``.

Works the same under ``torchrun --nproc_per_node=2 -m mslib train ...`` (DDP: one process
per GPU, or Gloo processes on a CPU). Everything a run needs comes from the method's
config (``mslib.configs.get_config(model, profile)``) plus the few flags that override it.

Adding a model is one line in :data:`MODELS`: ``name -> "module:function"`` (imported only
when used) or a callable, with the signature ``recipe(config, in_channels, out_channels)``
returning a :class:`mslib.recipes.Recipe` (the model, the keyword arguments of
:func:`mslib.train.fit` -- ``loss_fn``, ``param_groups``, ``step_fn``, ``batch_transform`` --
and the transforms) or a bare ``nn.Module``. ``out_channels`` is 1 for a binary dataset
(sigmoid) and the number of classes otherwise. The name must also be a config registered in
:mod:`mslib.configs`. Recipes live in :mod:`mslib.recipes`.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any, Callable

from mslib.configs import PROFILES, available_methods, get_config

__all__ = ["MODELS", "main", "build_parser"]

#: name -> recipe ("module:function" imported when used, or a callable ``(config, in_channels, out_channels)
#: -> Recipe | nn.Module``); the name must also be a config registered in :mod:`mslib.configs`.
MODELS: dict[str, str | Callable[..., Any]] = {
    "unet": "mslib.recipes.unet:recipe",
    "m2snet": "mslib.recipes.m2snet:recipe",   # MSNet / M2SNet (chapter 6); binary data only
}


def _resolve(entry: str | Callable) -> Callable:
    if callable(entry):
        return entry
    module, _, attr = entry.partition(":")
    return getattr(importlib.import_module(module), attr)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mslib", description="mslib: multi-scale medical image segmentation",
                                allow_abbrev=False)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a model with the shared engine", allow_abbrev=False,
                       description="Train MODEL on DATA with the PROFILE config; writes history.csv and last.pt to OUT.")
    t.add_argument("--model", required=True, help=f"one of: {', '.join(sorted(MODELS))}")
    t.add_argument("--data", default="synthetic-polyp",
                   help="dataset name for mslib.data.load_dataset (synthetic-polyp, a prepared dataset, or a path)")
    t.add_argument("--profile", default="quick", help=f"one of: {', '.join(PROFILES)}")
    t.add_argument("--out", default=None, help="output folder (default runs/MODEL-PROFILE)")
    t.add_argument("--epochs", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--image-size", type=int)
    t.add_argument("--seed", type=int)
    t.add_argument("--num-workers", type=int)
    t.add_argument("--num-images", type=int, default=None, help="synthetic data only: number of images to generate")
    t.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:1 | mps")
    t.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="continue from OUT/last.pt if present (default: yes)")
    t.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="show progress bars")
    t.add_argument("--test", action="store_true", help="also evaluate on the test split after training")
    sub.add_parser("list", help="list models, profiles and datasets")
    return p


def _train(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import torch
    from torch.utils.data import DataLoader

    from mslib.data import load_dataset
    from mslib.recipes import Recipe, config_transforms, default_loss
    from mslib.train import distributed as D
    from mslib.train.engine import evaluate, fit
    from mslib.utils import get_device, seed_worker

    if args.model not in MODELS:
        parser.error(f"unknown model {args.model!r}; valid models are {', '.join(map(repr, sorted(MODELS)))}")
    overrides = {k: v for k, v in (("epochs", args.epochs), ("batch_size", args.batch_size), ("lr", args.lr),
                                   ("image_size", args.image_size), ("seed", args.seed),
                                   ("num_workers", args.num_workers)) if v is not None}
    try:
        config = get_config(args.model, args.profile, **overrides)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        device = get_device(args.device)
    except (ValueError, RuntimeError, TypeError) as exc:
        parser.error(str(exc))
    out = Path(args.out) if args.out else Path("runs") / f"{args.model}-{args.profile}"

    started = D.init_from_env(device)
    try:
        n = args.num_images if args.num_images is not None else getattr(config, "synthetic_n", None)
        data_kw = {"n": n, "size": config.image_size, "seed": config.seed}  # n, size: synthetic data only
        if not D.is_main():
            D.barrier()  # rank 0 generates / validates the dataset first
        try:
            train_ds = load_dataset(args.data, "train", **data_kw)
        finally:
            if D.is_main():
                D.barrier()
        out_channels = 1 if train_ds.num_classes == 2 else train_ds.num_classes
        built = _resolve(MODELS[args.model])(config, train_ds.channels, out_channels)
        recipe = built if isinstance(built, Recipe) else Recipe(built)
        fit_kwargs = dict(recipe.fit_kwargs)
        fit_kwargs.setdefault("loss_fn", default_loss(config, out_channels))
        transforms = recipe.transforms or (lambda train: config_transforms(config, train))
        train_ds.transform = transforms(True)
        val_ds = load_dataset(args.data, "val", transforms(False), **data_kw)
        test_ds = load_dataset(args.data, "test", transforms(False), **data_kw) if args.test else None

        gen = torch.Generator().manual_seed(config.seed)
        loader_kw = dict(batch_size=config.batch_size, num_workers=config.num_workers, worker_init_fn=seed_worker,
                         pin_memory=device.type == "cuda", persistent_workers=False)  # fresh workers each epoch: exact resume
        train_loader = DataLoader(train_ds, shuffle=True, generator=gen, **loader_kw)
        val_loader = DataLoader(val_ds, shuffle=False, **loader_kw)
        if D.is_main():
            n_params = sum(p.numel() for p in recipe.model.parameters())
            print(f"training {args.model} ({n_params:,} parameters, profile {args.profile}) on {args.data}: "
                  f"{len(train_ds)} train / {len(val_ds)} val images at {config.image_size} px, "
                  f"{config.epochs} epochs, device {device}, {D.get_world_size()} process(es)", flush=True)
        history = fit(recipe.model, train_loader, val_loader, config=config, out_dir=out, resume=args.resume,
                      device=device, progress=args.progress, **fit_kwargs)
        if D.is_main() and history.last is not None:
            shown = {k: round(v, 4) for k, v in history.last.items() if k.startswith(("val_", "train_loss"))}
            print(f"final (epoch {history.last['epoch']}): {shown}")
            print(f"history:    {out / 'history.csv'}")
            print(f"checkpoint: {out / 'last.pt'}")
        if test_ds is not None and D.is_main():
            res = evaluate(recipe.model, DataLoader(test_ds, shuffle=False, **loader_kw), device=device)
            print(f"test ({len(test_ds)} images): " + ", ".join(f"{k}={v:.4f}" for k, v in res.items() if k != "per_image"))
    finally:
        if started:
            D.cleanup()
    return 0


def _list() -> int:
    from mslib.data import list_datasets

    print("models:   " + ", ".join(sorted(MODELS)))
    print("configs:  " + ", ".join(available_methods()))
    print("profiles: " + ", ".join(PROFILES))
    print("datasets: " + ", ".join(list_datasets()))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m mslib`` and the ``mslib`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "train":
        return _train(args, parser)
    return _list()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
