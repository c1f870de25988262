"""Training configuration: one flat dataclass, with the reference defaults (ARS-DETR / MutDet configs)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .defaults import DEFAULT_LR_MULT_KEYS, decay_epochs_for

AMP_MODES = ("none", "bf16", "fp16")

# Keys that change the trajectory of a run: a resume with another value would silently mix two runs.
TRAJECTORY_KEYS = ("epochs", "batch_size", "lr", "weight_decay", "betas", "lr_mult", "lr_mult_keys",
                   "warmup_iters", "warmup_ratio", "decay_epochs", "decay_gamma", "clip_max_norm", "amp", "seed")


@dataclass
class TrainConfig:
    """Hyper-parameters of ``trainer.train``. Field comments give the meaning; defaults are the paper's."""

    epochs: int = 36                      # total epochs (12 / 24 / 36 in the tables)
    batch_size: int = 2                   # images per process (reference: 2 per GPU)
    lr: float = 1e-4                      # AdamW base learning rate
    weight_decay: float = 1e-5            # AdamW weight decay
    betas: tuple[float, float] = (0.9, 0.999)
    lr_mult: float = 0.1                  # lr multiplier for parameters named by lr_mult_keys
    lr_mult_keys: tuple[str, ...] = DEFAULT_LR_MULT_KEYS  # name substrings that get lr * lr_mult
    warmup_iters: int = 500               # linear warm-up length, iterations over the whole run
    warmup_ratio: float = 1.0 / 3.0       # warm-up starts at lr * warmup_ratio
    decay_epochs: list[int] | None = None  # 0-based epochs where lr *= decay_gamma; None: [round(32/36*epochs)]
    decay_gamma: float = 0.1
    clip_max_norm: float | None = 35.0    # L2 gradient clipping; None or 0 disables
    amp: str = "none"                     # "none" | "bf16" | "fp16" autocast, CUDA only (ignored on CPU)
    seed: int = 42                        # data order, augmentation and RNG seed (rank r seeds seed + r)
    checkpoint_epochs: list[int] = field(default_factory=list)  # also write epoch_<E>.pth after these
    checkpoint_every_iters: int = 0       # also refresh last.pth every N iterations (0: at epoch ends only)
    full_state_in_epoch_checkpoints: bool = False  # epoch_<E>.pth with optimizer/RNG state too
    log_interval: int = 50                # iterations between CSV rows / TensorBoard points / log lines
    num_workers: int = 2                  # DataLoader workers per process (used by build_train_loader)
    find_unused_parameters: bool = True   # DDP flag; mmrotate's DETR configs set it (unused heads in some steps)
    resume: bool = True                   # continue from <out_dir>/last.pth when it exists
    progress_bar: bool | str = "auto"     # tqdm bar: True, False, or "auto" (only on a terminal)
    tensorboard: bool = True              # write TensorBoard event files

    @classmethod
    def from_dict(cls, values: dict | None) -> "TrainConfig":
        """Build from a (YAML) dict; unknown keys are an error that lists them and the known ones."""
        values = dict(values or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training config keys {unknown}; known keys: {sorted(known)}")
        if "betas" in values:
            values["betas"] = tuple(values["betas"])
        if "lr_mult_keys" in values:
            if isinstance(values["lr_mult_keys"], str):
                raise ValueError(f"lr_mult_keys must be a list, got the string {values['lr_mult_keys']!r}")
            values["lr_mult_keys"] = tuple(values["lr_mult_keys"])
        cfg = cls(**values)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if int(self.epochs) != self.epochs or self.epochs < 1:
            raise ValueError(f"epochs must be a positive integer, got {self.epochs!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp={self.amp!r}: expected one of {AMP_MODES}")
        bad = [e for e in self.checkpoint_epochs if not 1 <= e <= self.epochs]
        if bad:
            raise ValueError(f"checkpoint_epochs {bad} outside 1..{self.epochs} (epochs)")
        if self.progress_bar not in (True, False, "auto"):
            raise ValueError(f"progress_bar must be true, false or 'auto', got {self.progress_bar!r}")
        if self.checkpoint_every_iters < 0 or self.log_interval < 1:
            raise ValueError("checkpoint_every_iters must be >= 0 and log_interval >= 1")

    @property
    def resolved_decay_epochs(self) -> list[int]:
        return list(self.decay_epochs) if self.decay_epochs is not None else decay_epochs_for(self.epochs)

    @property
    def save_epochs(self) -> list[int]:
        """Epochs (1-based, completed) that get an ``epoch_<E>.pth``: the configured ones plus the last."""
        return sorted(set(self.checkpoint_epochs) | {self.epochs})

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["betas"] = list(self.betas)
        out["lr_mult_keys"] = list(self.lr_mult_keys)
        return out
