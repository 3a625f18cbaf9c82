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
import dataclasses
import importlib
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mslib.configs import PROFILES, available_methods, get_config
from mslib.train.run_folder import (
    CLIError,
    RunLock,
    UsageError,
    check_out_dir,
    check_resume,
    exit_code,
    format_error,
    run_identity,
)

__all__ = ["MODELS", "main", "build_parser"]

#: name -> recipe ("module:function" imported when used, or a callable ``(config, in_channels, out_channels)
#: -> Recipe | nn.Module``); the name must also be a config registered in :mod:`mslib.configs`.
MODELS: dict[str, str | Callable[..., Any]] = {
    "unet": "mslib.recipes.unet:recipe",
    "m2snet": "mslib.recipes.m2snet:recipe",  # MSNet / M2SNet (chapter 6); binary data only
    "pdcr": "mslib.recipes.pdcr:recipe",  # PDCR + UAFR on UNet / FCN / DeepLabV3+ (chapter 14)
}


def _resolve(entry: str | Callable) -> Callable:
    if callable(entry):
        return entry
    module, _, attr = entry.partition(":")
    return getattr(importlib.import_module(module), attr)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mslib", description="mslib: multi-scale medical image segmentation", allow_abbrev=False
    )
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser(
        "train",
        help="train a model with the shared engine",
        allow_abbrev=False,
        description="Train MODEL on DATA with the PROFILE config; writes history.csv and last.pt to OUT.",
    )
    t.add_argument("--model", required=True, help=f"one of: {', '.join(sorted(MODELS))}")
    t.add_argument(
        "--data",
        default="synthetic-polyp",
        help="dataset name for mslib.data.load_dataset (synthetic-polyp, a prepared dataset, or a path)",
    )
    t.add_argument("--profile", default="quick", help=f"one of: {', '.join(PROFILES)}")
    t.add_argument("--out", default=None, help="run folder (default runs/MODEL-PROFILE-DATA); locked while training")
    t.add_argument("--epochs", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--image-size", type=int)
    t.add_argument("--seed", type=int)
    t.add_argument("--num-workers", type=int)
    t.add_argument("--num-images", type=int, default=None, help="synthetic data only: number of images to generate")
    t.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:1 | mps")
    t.add_argument(
        "--resume",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="continue from OUT/last.pt if present and it is the same run (default: yes); "
        "--no-resume starts afresh and replaces it",
    )
    t.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="show progress bars")
    t.add_argument("--test", action="store_true", help="also evaluate on the test split after training")
    t.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub.add_parser("list", help="list models, profiles and datasets")
    return p


def _positive(name: str, value, allow_zero: bool = False) -> None:
    if value is not None and (value < 0 or (value == 0 and not allow_zero)):
        raise UsageError(f"{name} {value}: must be {'>= 0' if allow_zero else '> 0'}")


def _check_args(args: argparse.Namespace) -> None:
    """Every check that needs no data and no model: seconds, not an epoch."""
    if args.model not in MODELS:
        raise UsageError(
            f"--model {args.model!r}: unknown model; valid models are {', '.join(map(repr, sorted(MODELS)))}"
        )
    for flag, v in (
        ("--epochs", args.epochs),
        ("--batch-size", args.batch_size),
        ("--image-size", args.image_size),
        ("--num-images", args.num_images),
    ):
        _positive(flag, v)
    _positive("--num-workers", args.num_workers, allow_zero=True)
    if args.lr is not None and not (args.lr > 0 and math.isfinite(args.lr)):
        raise UsageError(
            f"--lr {args.lr}: the learning rate must be a positive number (with 0 training cannot change the weights)"
        )


def _default_out(args: argparse.Namespace) -> Path:
    """``runs/MODEL-PROFILE-DATA``: two runs on different data never share a folder by default."""
    data = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(str(args.data)).name or str(args.data)).strip("_") or "data"
    return Path("runs") / f"{args.model}-{args.profile}-{data}"


def _peek_resume(out: Path, identity: dict, resume: bool) -> list[str]:
    """Refuse to resume a different run before anything is built; the notes to print otherwise."""
    from mslib.train.engine import CHECKPOINT, load_checkpoint

    ckpt_path = out / CHECKPOINT
    if not resume or not ckpt_path.is_file():
        return []
    try:
        ckpt = load_checkpoint(ckpt_path)
    except RuntimeError as exc:
        raise UsageError(f"{exc}; or pass --no-resume to start afresh") from exc
    return check_resume(ckpt.get("identity"), identity, int(ckpt.get("epoch", 0)), out)


def _dry_run(model, channels: int, size: int, multiple: int | None) -> None:
    """One forward pass of one image at the training size, so that a shape error comes before the first step."""
    import torch

    if multiple and size % multiple:
        lo, hi = size - size % multiple, size - size % multiple + multiple
        raise UsageError(
            f"--image-size {size}: this network halves the image {multiple.bit_length() - 1} times, so "
            f"the size must be a multiple of {multiple} (e.g. {lo or hi} or {hi})"
        )
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, channels, size, size))
    except (RuntimeError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise UsageError(
            f"the model cannot take a {channels}-channel image of {size} px ({first}); change "
            "--image-size or the dataset"
        ) from exc
    finally:
        model.train(was)


def _train(args: argparse.Namespace) -> int:
    _check_args(args)
    overrides = {
        k: v
        for k, v in (
            ("epochs", args.epochs),
            ("batch_size", args.batch_size),
            ("lr", args.lr),
            ("image_size", args.image_size),
            ("seed", args.seed),
            ("num_workers", args.num_workers),
        )
        if v is not None
    }
    try:
        config = get_config(args.model, args.profile, **overrides)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    import torch
    from torch.utils.data import DataLoader

    from mslib.data import load_dataset
    from mslib.recipes import Recipe, config_transforms, default_loss
    from mslib.train import distributed as D
    from mslib.train.engine import evaluate, fit
    from mslib.utils import get_device, seed_everything, seed_worker

    try:
        device = get_device(args.device)
    except (ValueError, RuntimeError, TypeError) as exc:
        raise UsageError(f"--device {args.device}: {exc}") from exc
    out = Path(args.out) if args.out else _default_out(args)
    n = args.num_images if args.num_images is not None else getattr(config, "synthetic_n", None)
    fields = dataclasses.asdict(config)
    identity = run_identity(
        model=args.model,
        data=str(args.data),
        profile=args.profile,
        num_images=n,
        epochs=fields.pop("epochs"),
        config=fields,
    )

    started = D.init_from_env(device)
    lock = None
    try:
        if D.is_main():
            check_out_dir(out)
            lock = RunLock(out).__enter__()  # first: no other run writes the checkpoint we read
            for note in _peek_resume(out, identity, args.resume):
                print(f"note: {note}", flush=True)
        seed_everything(config.seed)  # before the data and the model draw anything
        data_kw = {"n": n, "size": config.image_size, "seed": config.seed}  # n, size: synthetic data only
        if not D.is_main():
            D.barrier()  # rank 0 generates / validates the dataset first
        try:
            train_ds = load_dataset(args.data, "train", **data_kw)
            val_ds = load_dataset(args.data, "val", **data_kw)
            test_ds = load_dataset(args.data, "test", **data_kw) if args.test else None
        finally:
            if D.is_main():
                D.barrier()
        if len(train_ds) == 0:
            raise UsageError(
                f"--data {args.data}: the train split is empty; list training images in its splits/train.txt"
            )
        out_channels = 1 if train_ds.num_classes == 2 else train_ds.num_classes
        try:
            built = _resolve(MODELS[args.model])(config, train_ds.channels, out_channels)
        except ValueError as exc:
            raise UsageError(f"--model {args.model} on --data {args.data}: {exc}") from exc
        recipe = built if isinstance(built, Recipe) else Recipe(built)
        _dry_run(recipe.model, train_ds.channels, config.image_size, recipe.size_multiple)
        fit_kwargs = dict(recipe.fit_kwargs)
        fit_kwargs.setdefault("loss_fn", default_loss(config, out_channels))
        transforms = recipe.transforms or (lambda train: config_transforms(config, train))
        train_ds.transform = transforms(True)
        for ds in (val_ds, test_ds):
            if ds is not None:
                ds.transform = transforms(False)

        gen = torch.Generator().manual_seed(config.seed)
        loader_kw = dict(
            batch_size=config.batch_size,
            num_workers=config.num_workers,
            worker_init_fn=seed_worker,
            pin_memory=device.type == "cuda",
            persistent_workers=False,
        )  # fresh workers each epoch: exact resume
        drop_last = len(train_ds) % config.batch_size == 1 and len(train_ds) > 1
        if drop_last and D.is_main():
            print(
                f"note: {len(train_ds)} training images in batches of {config.batch_size} leave a last batch of one "
                "image, which batch norm cannot train on: it is left out of each epoch (a different image each "
                "epoch, as batches are shuffled)",
                flush=True,
            )
        train_loader = DataLoader(train_ds, shuffle=True, generator=gen, drop_last=drop_last, **loader_kw)
        val_loader = DataLoader(val_ds, shuffle=False, **loader_kw)
        if D.is_main():
            n_params = sum(p.numel() for p in recipe.model.parameters())
            print(
                f"training {args.model} ({n_params:,} parameters, profile {args.profile}) on {args.data}: "
                f"{len(train_ds)} train / {len(val_ds)} val images at {config.image_size} px, "
                f"{config.epochs} epochs, device {device}, {D.get_world_size()} process(es), run folder {out}",
                flush=True,
            )
        history = fit(
            recipe.model,
            train_loader,
            val_loader,
            config=config,
            out_dir=out,
            resume=args.resume,
            device=device,
            progress=args.progress,
            identity=identity,
            **fit_kwargs,
        )
        if D.is_main() and history.last is not None:
            shown = {k: round(v, 4) for k, v in history.last.items() if k.startswith(("val_", "train_loss"))}
            print(f"final (epoch {history.last['epoch']}): {shown}")
            print(f"history:    {out / 'history.csv'}")
            print(f"checkpoint: {out / 'last.pt'}")
        if test_ds is not None and D.is_main():
            res = evaluate(recipe.model, DataLoader(test_ds, shuffle=False, **loader_kw), device=device)
            print(
                f"test ({len(test_ds)} images): "
                + ", ".join(f"{k}={v:.4f}" for k, v in res.items() if k != "per_image")
            )
    finally:
        if lock is not None:
            lock.release()
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
    """Entry point of ``python -m mslib`` and the ``mslib`` console script; returns the exit status.

    A bad argument, input file or run folder is one line on stderr (``error: ...``, naming the
    argument or file and the fix) and exit status 2; other failures exit 1, ``Ctrl-C`` 130.
    ``--debug`` shows the traceback instead.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command != "train":
        return _list()
    try:
        return _train(args)
    except (CLIError, ValueError, LookupError, OSError, RuntimeError, TypeError, KeyboardInterrupt) as exc:
        if args.debug:
            raise
        from mslib.data.folder import DatasetError

        print(format_error(exc), file=sys.stderr, flush=True)
        if isinstance(exc, (DatasetError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)):
            return 2  # the user's input: fixable as the message says
        return exit_code(exc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
