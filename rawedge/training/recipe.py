"""Training recipes: one YAML file says everything a run needs, and is stored in every checkpoint.

Schema (every key optional except model.name and data.dir; unknown keys are an error):

  name: unet_small
  notes: free text (hardware, expected time)
  model:     {name: unet, config: {width: 16, depth: 3}, init: null}   # init: checkpoint to start from
  data:      {dir: data/pairs, kinds: null, crop: 128, batch: 8, crops_per_image: 8, flips: true,
              workers: 0, val_crop: 512}
  loss:      {name: raw_l1, config: {}}
  optimizer: {name: adamw, lr: 2.0e-4, weight_decay: 1.0e-4, betas: [0.9, 0.999]}
  schedule:  {name: cosine, warmup_steps: 0, min_lr: 1.0e-6}   # or {name: step, step_epochs: 10,
                                                                #     gamma: 0.8}, or {name: constant}
  train:     {epochs: 10, max_steps: null, grad_clip: 1.0, seed: 0, device: auto, threads: null, out: runs/NAME,
              checkpoint_every: 500, keep_step_checkpoints: false, log_every: 10, validate: true,
              validate_every: 1}

``data.kinds`` restricts training to libraw / camera_jpeg / synthetic pairs; ``data.val_crop`` validates on
the central square of that size of each validation image (null: the whole image, tiled);
``train.max_steps`` stops early (it also sets the cosine schedule's length); ``train.threads`` caps torch's CPU
threads per process (on a shared or oversubscribed machine 1 thread per process is often fastest).
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from rawedge.errors import RawedgeError


@dataclass
class ModelSpec:
    name: str = "unet"
    config: dict = field(default_factory=dict)
    init: str | None = None  # checkpoint whose weights and buffers start the run (e.g. a priorraw prior table)


@dataclass
class DataSpec:
    dir: str = ""
    kinds: list[str] | None = None
    crop: int = 128
    batch: int = 8
    crops_per_image: int = 8
    flips: bool = True
    workers: int = 0
    val_crop: int | None = 512


@dataclass
class LossSpec:
    name: str = "raw_l1"
    config: dict = field(default_factory=dict)
    prior_trust: float = 0.0  # weight of rawedge.losses.confidence.prior_pull (models with an analytic output)


@dataclass
class OptimizerSpec:
    name: str = "adamw"
    lr: float = 2e-4
    weight_decay: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])


@dataclass
class ScheduleSpec:
    name: str = "cosine"  # cosine | step | constant
    warmup_steps: int = 0
    min_lr: float = 1e-6
    step_epochs: int = 10
    gamma: float = 0.8


@dataclass
class TrainSpec:
    epochs: int = 10
    max_steps: int | None = None
    grad_clip: float | None = 1.0
    seed: int = 0
    device: str = "auto"
    threads: int | None = None  # torch CPU threads per process (None: torch's default, all cores)
    out: str = "runs/rawedge"
    checkpoint_every: int = 500
    keep_step_checkpoints: bool = False
    log_every: int = 10
    validate: bool = True
    validate_every: int = 1  # epochs (the last epoch is always validated)


SECTIONS = {"model": ModelSpec, "data": DataSpec, "loss": LossSpec, "optimizer": OptimizerSpec,
            "schedule": ScheduleSpec, "train": TrainSpec}


@dataclass
class Recipe:
    name: str = "rawedge"
    notes: str = ""
    model: ModelSpec = field(default_factory=ModelSpec)
    data: DataSpec = field(default_factory=DataSpec)
    loss: LossSpec = field(default_factory=LossSpec)
    optimizer: OptimizerSpec = field(default_factory=OptimizerSpec)
    schedule: ScheduleSpec = field(default_factory=ScheduleSpec)
    train: TrainSpec = field(default_factory=TrainSpec)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, source: str | os.PathLike | None = None) -> Recipe:
        if not isinstance(d, dict):
            raise RawedgeError(source, "a recipe is a YAML mapping")
        unknown = set(d) - {"name", "notes", *SECTIONS}
        if unknown:
            raise RawedgeError(source, f"unknown recipe key(s) {', '.join(sorted(unknown))}; "
                                       f"known: name, notes, {', '.join(SECTIONS)}")
        kwargs = {"name": str(d.get("name", "rawedge")), "notes": str(d.get("notes", "") or "")}
        for key, spec in SECTIONS.items():
            section = d.get(key) or {}
            if not isinstance(section, dict):
                raise RawedgeError(source, f"recipe section {key!r} must be a mapping")
            names = {f.name for f in fields(spec)}
            bad = set(section) - names
            if bad:
                raise RawedgeError(source, f"unknown key(s) in {key}: {', '.join(sorted(bad))}; "
                                           f"known: {', '.join(sorted(names))}")
            kwargs[key] = spec(**section)
        recipe = cls(**kwargs)
        recipe.check(source)
        return recipe

    def check(self, source=None) -> None:
        """Values a run cannot start with, reported before any work is done."""
        problems = []
        if not self.data.dir:
            problems.append("data.dir is required (or --data)")
        if self.data.crop <= 0 or self.data.crop % 2:
            problems.append("data.crop must be a positive even number")
        if self.data.batch < 1 or self.data.crops_per_image < 1:
            problems.append("data.batch and data.crops_per_image must be >= 1")
        if self.optimizer.name.lower() != "adamw":
            problems.append(f"optimizer {self.optimizer.name!r} is not supported (adamw)")
        if self.schedule.name not in ("cosine", "step", "constant"):
            problems.append(f"schedule {self.schedule.name!r}: use cosine, step or constant")
        if self.train.epochs < 1 and not self.train.max_steps:
            problems.append("train.epochs must be >= 1 (or set train.max_steps)")
        if self.train.threads is not None and self.train.threads < 1:
            problems.append("train.threads must be >= 1 (or null)")
        if self.train.validate_every < 1 or self.train.checkpoint_every < 1:
            problems.append("train.validate_every and train.checkpoint_every must be >= 1")
        if self.optimizer.lr <= 0:
            problems.append("optimizer.lr must be > 0")
        if problems:
            raise RawedgeError(source, "; ".join(problems))


def load_recipe(path: str | os.PathLike) -> Recipe:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise RawedgeError(path, "no such recipe file")
    try:
        d = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise RawedgeError(path, f"not valid YAML ({str(exc).splitlines()[0]})") from None
    return Recipe.from_dict(d or {}, path)


def apply_overrides(d: dict, assignments: list[str]) -> dict:
    """``section.key=value`` assignments (value parsed as YAML) applied to a recipe dict."""
    import copy

    import yaml

    out = copy.deepcopy(d)
    for text in assignments:
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise RawedgeError(None, f"--set expects section.key=value, got {text!r}")
        *parents, leaf = key.strip().split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise RawedgeError(None, f"--set {key}: {part} is not a section")
        node[leaf] = yaml.safe_load(value)
    return out
