"""The training loop: any registry model with any registry loss on a prepared data folder.

AdamW, cosine (with warm-up), step or constant schedule per optimisation step, gradient clipping,
validation (RAW PSNR on the validation split) at the end of every epoch with the best checkpoint kept,
resumable checkpoints (``last.pt`` every ``checkpoint_every`` steps and at each epoch end, optionally
``step_NNNNNN.pt``), a rich progress bar, and DDP under torchrun.

Determinism: the model is initialised from ``seed``; crops come from (seed, epoch, index) and the
shuffle from (seed, epoch), so a run resumed from a checkpoint sees the same batches it would have seen.
In one process the torch RNG (used by stochastic losses and models) is restored exactly; under DDP each
rank re-seeds from (seed, rank, step) on resume.
"""
from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from rawedge.contract import INPUT_NAMES
from rawedge.errors import RawedgeError
from rawedge.losses.confidence import confidence_nll, prior_pull
from rawedge.training import distributed
from rawedge.training.recipe import Recipe

# Weight of the confidence term (rawedge.losses.confidence): its gradient reaches the shared decoder, so it
# stays small beside the reconstruction losses (~1e-2 L1); the sigma head itself learns at any weight.
CONFIDENCE_WEIGHT = 0.002


class _SkipFirst(Sampler):
    """The wrapped sampler's order without its first ``skip`` indices (resuming mid-epoch)."""

    def __init__(self, sampler, skip: int):
        self.sampler, self.skip = sampler, skip

    def __iter__(self):
        return iter(list(self.sampler)[self.skip:])

    def __len__(self):
        return max(0, len(self.sampler) - self.skip)


def lr_factor(spec, step: int, total_steps: int, steps_per_epoch: int, base_lr: float) -> float:
    """Multiplier of the base learning rate at optimisation step ``step``."""
    warm = spec.warmup_steps
    if warm and step < warm:
        return (step + 1) / warm
    if spec.name == "constant":
        return 1.0
    if spec.name == "step":
        return spec.gamma ** ((step // max(1, steps_per_epoch)) // max(1, spec.step_epochs))
    progress = min(1.0, (step - warm) / max(1, total_steps - warm))
    floor = min(1.0, spec.min_lr / base_lr)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def to_device(batch: dict, device) -> dict:
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@torch.no_grad()
def validate(model, dataset, device, center_crop: int | None, tile: int = 512) -> dict:
    """RAW PSNR (packed RGGB, [0, 1]) over the whole validation split, overall and per kind."""
    from rawedge.metrics import psnr
    from rawedge.training.tiling import predict_full

    was_training = model.training
    model.eval()
    scores: dict[str, list[float]] = {}
    for j in range(len(dataset.samples)):
        item = dataset.full_item(j, center_crop=center_crop)
        inputs = {k: item[k][None].to(device) for k in INPUT_NAMES}
        pred = predict_full(model, inputs, tile=tile)["raw"][0].float().cpu().numpy()
        scores.setdefault(item["kind"], []).append(psnr(pred, item["raw"].numpy()))
    model.train(was_training)
    every = [v for vals in scores.values() for v in vals]
    return {"val_raw_psnr": float(np.mean(every)),
            **{f"val_raw_psnr_{kind}": float(np.mean(v)) for kind, v in sorted(scores.items())}}


@dataclass
class TrainResult:
    steps: int
    epochs_done: int
    last: Path
    best: Path | None
    metrics: dict


class Trainer:
    def __init__(self, recipe: Recipe, show_progress: bool = True):
        from rawedge.data.dataset import PairDataset
        from rawedge.data.manifest import load_manifest
        from rawedge.losses import create_loss
        from rawedge.models.registry import create_model

        self.recipe = recipe
        if recipe.train.threads:
            torch.set_num_threads(recipe.train.threads)
        self.ctx = distributed.setup(recipe.train.device)
        self.show_progress = show_progress and self.ctx.is_main
        seed_everything(recipe.train.seed)
        self.model = create_model(recipe.model.name, **recipe.model.config).to(self.ctx.device)
        if recipe.model.init:
            self.init_from(recipe.model.init)
        align = int(getattr(self.model, "align", 2))
        if recipe.data.crop % align:
            raise RawedgeError(None, f"data.crop {recipe.data.crop} is not a multiple of model "
                                     f"{recipe.model.name!r}'s align {align}")
        self.loss_fn = create_loss(recipe.loss.name, **recipe.loss.config).to(self.ctx.device)
        self.manifest = load_manifest(recipe.data.dir)
        d = recipe.data
        self.train_set = PairDataset(d.dir, "train", crop=d.crop, crops_per_image=d.crops_per_image, flips=d.flips,
                                     kinds=d.kinds, seed=recipe.train.seed, manifest=self.manifest)
        has_val = recipe.train.validate and self.manifest.select("val", d.kinds)
        self.val_set = (PairDataset(d.dir, "val", crop=None, kinds=d.kinds, manifest=self.manifest)
                        if has_val else None)
        self.sampler = DistributedSampler(self.train_set, num_replicas=self.ctx.world_size, rank=self.ctx.rank,
                                          shuffle=True, seed=recipe.train.seed, drop_last=True)
        self.steps_per_epoch = len(self.sampler) // d.batch
        if self.steps_per_epoch < 1:
            raise RawedgeError(d.dir, f"{len(self.train_set)} training crops per epoch over {self.ctx.world_size} "
                                      f"process(es) do not fill one batch of {d.batch}")
        t = recipe.train
        self.total_steps = t.max_steps or t.epochs * self.steps_per_epoch
        self.epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        o = recipe.optimizer
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=o.lr, weight_decay=o.weight_decay,
                                           betas=tuple(o.betas))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(recipe.schedule, s, self.total_steps, self.steps_per_epoch, o.lr))
        self.net = self.model
        if self.ctx.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.ctx.device.index] if self.ctx.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        self.out = Path(t.out)
        self.step = 0
        self.epoch = 0
        self.batches_done = 0  # in the current epoch
        self.best: float | None = None
        self.metrics: dict = {}

    # --- state ---------------------------------------------------------------------------------
    def init_from(self, path) -> None:
        """Start from another checkpoint's weights and buffers (not its optimizer state): a pretrained
        model, or a priorraw model whose prior table ``rawedge prior build`` made."""
        from rawedge.models.checkpoint import read_checkpoint

        ckpt = read_checkpoint(path)
        if ckpt["model_name"] != self.recipe.model.name:
            raise RawedgeError(path, f"--init checkpoint is model {ckpt['model_name']!r}, the recipe asks for "
                                     f"{self.recipe.model.name!r}")
        try:
            self.model.load_state_dict(ckpt["state_dict"])
        except RuntimeError as exc:
            raise RawedgeError(path, f"--init weights do not fit {self.recipe.model.name!r} {self.model.config} "
                                     f"({str(exc).splitlines()[0]})") from None

    def resume(self, path) -> None:
        from rawedge.models.checkpoint import read_checkpoint

        ckpt = read_checkpoint(path)
        state = ckpt.get("train_state")
        if not state:
            raise RawedgeError(path, "checkpoint has no train_state: it cannot be resumed (use it as --init)")
        if ckpt["model_name"] != self.recipe.model.name or dict(ckpt["config"]) != dict(self.model.config):
            raise RawedgeError(path, f"checkpoint is model {ckpt['model_name']!r} {ckpt['config']}, the recipe "
                                     f"asks for {self.recipe.model.name!r} {self.model.config}")
        if state.get("world_size", 1) != self.ctx.world_size:
            raise RawedgeError(path, f"saved with {state.get('world_size', 1)} process(es), resumed with "
                                     f"{self.ctx.world_size}: the data order would differ")
        self.model.load_state_dict(ckpt["state_dict"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        self.batches_done, self.best = int(state["batches_done"]), state.get("best")
        self.metrics = {k: v for k, v in (ckpt.get("metrics") or {}).items() if k != "step"}
        if self.ctx.distributed:
            torch.manual_seed(self.recipe.train.seed * 100003 + self.ctx.rank * 7919 + self.step)
        else:
            set_rng_state(state["rng"])

    def save(self, path: Path, epoch: int, batches_done: int) -> None:
        from rawedge.models.checkpoint import save_checkpoint

        state = {"step": self.step, "epoch": epoch, "batches_done": batches_done, "best": self.best,
                 "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                 "rng": rng_state(), "world_size": self.ctx.world_size}
        measured = [c for c in self.manifest.cameras.values() if not c.get("simulated")]  # see rawedge.data.mix
        save_checkpoint(path, self.model, camera_profiles=measured,
                        recipe=self.recipe.to_dict(), metrics=dict(self.metrics, step=self.step),
                        train_state=state, extra={"data_dir": str(self.recipe.data.dir)})

    def log(self, record: dict) -> None:
        if self.ctx.is_main:
            with open(self.out / "log.jsonl", "a") as fh:
                fh.write(json.dumps(record) + "\n")

    # --- loop ----------------------------------------------------------------------------------
    def _loader(self, skip_batches: int) -> DataLoader:
        sampler = _SkipFirst(self.sampler, skip_batches * self.recipe.data.batch) if skip_batches else self.sampler
        workers = self.recipe.data.workers
        return DataLoader(self.train_set, batch_size=self.recipe.data.batch, sampler=sampler, drop_last=True,
                          num_workers=workers, persistent_workers=False,
                          pin_memory=self.ctx.device.type == "cuda")

    def _train_step(self, batch: dict) -> tuple[float, dict]:
        batch = to_device(batch, self.ctx.device)
        outputs = self.net(**{k: batch[k] for k in INPUT_NAMES})
        loss, parts = self.loss_fn(outputs, batch)
        if "sigma" in outputs:  # a model with a confidence output learns it beside any loss
            nll = confidence_nll(outputs["sigma"], outputs["raw"], batch["raw"])
            loss = loss + CONFIDENCE_WEIGHT * nll
            parts = {**parts, "confidence_nll": float(nll.detach())}
        if self.recipe.loss.prior_trust and "analytic" in outputs:  # stay at the prior where the data disagree
            pull = prior_pull(outputs["raw"], outputs["analytic"])
            loss = loss + self.recipe.loss.prior_trust * pull
            parts = {**parts, "prior_pull": float(pull.detach())}
        if not torch.isfinite(loss):
            raise RawedgeError(None, f"loss is {float(loss)} at step {self.step + 1}: lower optimizer.lr or "
                                     "check the data")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.recipe.train.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.recipe.train.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return float(loss.detach()), parts

    def _end_of_epoch(self, epoch: int, batches_done: int, train_loss: float) -> None:
        """Validate and save; an epoch cut short by max_steps is saved as such, to resume mid-epoch."""
        complete = batches_done >= self.steps_per_epoch
        resume_at = (epoch + 1, 0) if complete else (epoch, batches_done)
        self.metrics["train_loss"] = train_loss
        self.metrics["epoch"] = epoch + 1
        improved = False
        last_epoch = epoch + 1 >= self.epochs or self.step >= self.total_steps
        due = (epoch + 1) % self.recipe.train.validate_every == 0 or last_epoch
        if self.ctx.is_main and self.val_set is not None and due:
            self.metrics.update(validate(self.model, self.val_set, self.ctx.device, self.recipe.data.val_crop))
            self.metrics["val_epoch"] = epoch + 1
            score = self.metrics["val_raw_psnr"]
            improved = self.best is None or score > self.best
            if improved:
                self.best = score
            self.metrics["best_val_raw_psnr"] = self.best
        if self.ctx.is_main:
            self.save(self.out / "last.pt", *resume_at)
            if improved:
                self.save(self.out / "best.pt", *resume_at)
            self.log({"event": "epoch", **self.metrics, "step": self.step})
        self.ctx.barrier()

    def fit(self, resume=None) -> TrainResult:
        from rawedge.io.atomic import atomic_output

        if self.ctx.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            import yaml

            with atomic_output(self.out / "recipe.yaml") as tmp:
                Path(tmp).write_text(yaml.safe_dump(self.recipe.to_dict(), sort_keys=False))
        self.ctx.barrier()
        if resume:
            self.resume(resume)
        t = self.recipe.train
        per_step = self.recipe.data.batch * self.ctx.world_size
        with _progress_bar(self.show_progress) as bar:
            task = bar.add_task("train", total=self.total_steps, completed=self.step, epoch=self.epoch + 1,
                                loss=float("nan"), rate=0.0)
            for epoch in range(self.epoch, self.epochs):
                if self.step >= self.total_steps:
                    break
                self.sampler.set_epoch(epoch)
                self.train_set.set_epoch(epoch)
                skip = self.batches_done if epoch == self.epoch else 0
                losses, tic, done = [], time.perf_counter(), skip
                for i, batch in enumerate(self._loader(skip), start=skip):
                    if self.step >= self.total_steps:
                        break
                    loss, parts = self._train_step(batch)
                    done = i + 1
                    losses.append(loss)
                    rate = per_step * len(losses) / max(1e-9, time.perf_counter() - tic)
                    bar.update(task, advance=1, epoch=epoch + 1, loss=float(np.mean(losses[-20:])), rate=rate)
                    if self.step % max(1, t.log_every) == 0:
                        self.log({"event": "step", "step": self.step, "epoch": epoch + 1, "loss": loss, **parts,
                                  "lr": self.scheduler.get_last_lr()[0], "crops_per_s": rate})
                    if self.step % max(1, t.checkpoint_every) == 0 and self.ctx.is_main:
                        self.metrics["train_loss"] = float(np.mean(losses))
                        self.save(self.out / "last.pt", epoch, i + 1)
                        if t.keep_step_checkpoints:
                            self.save(self.out / f"step_{self.step:06d}.pt", epoch, i + 1)
                self._end_of_epoch(epoch, done, self.ctx.mean(float(np.mean(losses)) if losses else float("nan")))
                self.epoch, self.batches_done = epoch + 1, 0
        best = self.out / "best.pt"
        return TrainResult(steps=self.step, epochs_done=self.epoch, last=self.out / "last.pt",
                           best=best if best.exists() else None, metrics=dict(self.metrics))

    def close(self) -> None:
        distributed.teardown(self.ctx)


def _progress_bar(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]:.5f}"), TextColumn("{task.fields[rate]:.1f} crops/s"),
                    TimeRemainingColumn(), disable=not enabled)


def train(recipe: Recipe, resume=None, show_progress: bool = True) -> TrainResult:
    """Run a recipe (in this process, or as one rank of a torchrun job)."""
    trainer = Trainer(recipe, show_progress=show_progress)
    try:
        return trainer.fit(resume)
    finally:
        trainer.close()
