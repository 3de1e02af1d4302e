"""Training with accelerate: AdamW + OneCycle, EMA, mixed precision, several processes, exact resume.

Files in ``out_dir``:
- ``model.safetensors`` / ``model.json``: EMA weights and metadata (written at the end);
- ``train.csv``: one row per epoch (loss, lr, images/s);
- ``resume.safetensors`` / ``resume.json``: written every ``save_every`` steps, at every
  sample grid and on SIGTERM; a later run with the same options continues from it and
  ends with the same weights as an uninterrupted run (same seed, CPU);
- ``progress/epoch_XXXX.png``: a sample grid every ``sample_and_save_freq`` epochs.
"""

from __future__ import annotations

import copy
import csv
import io
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

from . import tracking
from .checks import check_train_options
from .checkpoint import CheckpointError, load_resume, load_state_strict, save_resume, save_tensors
from .data import ImageLoader, load_prepared
from .data.loader import normalise
from .guards import check_fields
from .io import sidecar, write_text
from .losses import drop_labels, dsm_draws
from .models import micro_batch_size, network_identity
from .options import SAMPLE
from .precision import launch_device, resolve_precision
from .progress import progress
from .samplers import SamplerSettings, sample, spec_from_options
from .score_function import make_score_fn
from .sde import VESDE
from .step import accumulate_dsm_gradients, adamw, ema_decay, load_optimizer_state, update_ema
from .timing import deterministic_cuda
from .unet import UNetModel, widths_without_time
from .unet_config import UNetConfig
from .viz import save_image_grid

log = logging.getLogger(__name__)

# Options that may differ between an interrupted run and its resumption.
# the sampling options only shape the progress grids
RESUME_FREE = {"save_every", "no_wandb", "log_with", "num_workers", "sample_and_save_freq", "compile", "micro_batch",
               *(o.name for o in SAMPLE)}


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


class Preempted(RuntimeError):
    """SIGTERM or SIGINT arrived; a resume checkpoint was written (``signum``: which)."""

    def __init__(self, message: str, signum: int = signal.SIGTERM):
        super().__init__(message)
        self.signum = int(signum)


def check_options(options: dict[str, Any], n_train: int) -> None:
    """Refuse impossible training options before any work starts (vsgm.checks, shared with the
    workflow's config check), and a batch larger than the data."""
    check_train_options(options)
    if n_train < options["batch_size"]:
        raise ValueError(f"batch_size {options['batch_size']} is larger than the training set per process ({n_train})")


def check_not_finished(out_dir: str | os.PathLike) -> None:
    """Refuse to train over a finished model (one without a resume file) unless --restart."""
    final, resume = Path(out_dir) / "model.safetensors", Path(out_dir) / "resume.safetensors"
    if final.exists() and not resume.exists():
        raise FileExistsError(f"{final} is a finished model; --restart trains a new one in its place")


def resume_identity(data_meta: dict[str, Any], n_images: int, total_steps: int) -> dict[str, Any]:
    """What a resume file was made from: the data (its checksum and image count) and the schedule's length.
    A resume file from other data or another schedule would finish a model that looks trained but is not."""
    return {"data_sha256": data_meta.get("sha256"), "n_images": n_images, "total_steps": total_steps}


def identity_mismatch(saved: dict[str, Any] | None, now: dict[str, Any]) -> str | None:
    """One line naming what differs between a resume file's identity and this run's (None: the same)."""
    if not isinstance(saved, dict):
        return "it does not record the data and schedule it was made from (written by an older vsgm)"
    diff = [f"{k} {saved.get(k)!r} there, {v!r} now" for k, v in now.items() if saved.get(k) != v]
    return ("it was made from other data or another schedule: " + "; ".join(diff)) if diff else None


def check_data_fits(options: dict[str, Any], images: torch.Tensor, labels: torch.Tensor, data_path) -> None:
    """Refuse data the network cannot take: signals of another dimension, labels beyond n_classes."""
    if options["dims"] != images.dim() - 2:
        raise ValueError(f"dims {options['dims']} needs {options['dims']}-D signals; {data_path} holds "
                         f"{images.dim() - 2}-D images")
    if options["conditional"] and int(labels.max()) >= options["n_classes"]:
        raise ValueError(f"labels go up to {int(labels.max())} but n_classes is {options['n_classes']}")


def warn_time_blind(net: torch.nn.Module, options: dict[str, Any]) -> None:
    """Warn when GroupNorm removes the added time embedding at some width (one channel per group)."""
    blind = widths_without_time(net)
    if blind:
        widths = {int(m * options["model_channels"]) for m in options["channel_mult"]}
        whole = ": the model cannot depend on the noise level at all" if set(blind) >= widths else ""
        log.warning("at width(s) %s GroupNorm has one channel per group and removes the added time "
                    "embedding%s; --use_scale_shift_norm or widths above 32 keep it", blind, whole)


class _SigtermFlag:
    """Turn SIGTERM and SIGINT (Ctrl-C) into a flag the loop checks between steps (the main thread only)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.raised = None  # the signal's name once one arrived
        self._old = {}

    def __enter__(self):
        for sig in self.SIGNALS:
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, _frame):
        self.raised = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


class Trainer:
    """One training run. Build it, then call ``run()``.

    Args:
        options: seed-named options (see ``vsgm train --help``).
        data_path: a prepared training split (``vsgm prepare``).
        out_dir: where the model, logs and resume files go.
    """

    def __init__(self, options: dict[str, Any], data_path: str | os.PathLike, out_dir: str | os.PathLike):
        self.options = dict(options)
        self.out_dir = Path(out_dir)
        check_train_options(self.options)  # before the data is read
        # the precision this device runs natively: fp16 needs CUDA, bf16 a CPU with native bf16 (else fp32)
        precision = resolve_precision(options.get("mixed_precision", "no"), launch_device())
        self.acc = Accelerator(mixed_precision=precision, **tracking.accelerator_kwargs(options, out_dir))
        deterministic_cuda(self.acc.device)
        data = load_prepared(data_path)
        self.data_meta, self.n_images = data.meta, len(data.images)
        self.channels, self.size = int(data.images.shape[1]), int(data.images.shape[-1])
        self.dataset = data.meta.get("dataset", options.get("dataset"))
        if options.get("size") not in (None, self.size):
            raise ValueError(f"size {options['size']} asked for, but {data_path} holds {self.size}px images: "
                             "prepare the data at that size, or leave --size out")
        self.options.update(dataset=self.dataset, size=self.size)  # what was trained on, not the CLI's defaults
        rank, world = self.acc.process_index, self.acc.num_processes
        check_options(self.options, len(data.images) // world)
        check_data_fits(options, data.images, data.labels, data_path)
        inputs, self.codec = data.images, None
        self.input_channels, self.input_size = self.channels, self.size
        if options["latent"]:
            from .latent import LatentCodec

            self.codec = LatentCodec(options["vae"], self.acc.device)
            self.input_channels, self.input_size = self.codec.latent_shape(self.channels, self.size)
            inputs = self.codec.encode(normalise(data.images)).cpu()  # once, not per epoch
        # one permutation per epoch shared by all processes, each taking its own shard
        self.loader = ImageLoader(inputs, data.labels, options["batch_size"], shuffle=True, seed=options["seed"],
                                  drop_last=True, device=self.acc.device, num_workers=options.get("num_workers", 0),
                                  rank=rank, world_size=world)
        self.sde = VESDE(options["sigma"])
        torch.manual_seed(options["seed"])
        net = UNetModel(UNetConfig.from_options(options, self.input_channels, self.input_size))
        warn_time_blind(net, options)
        self.ema = copy.deepcopy(net).requires_grad_(False).to(self.acc.device)
        opt = adamw(net.parameters(), options["lr"], options["decay"], self.acc.device)
        self.steps_per_epoch = len(self.loader)
        self.micro_batch = micro_batch_size(options, self.input_size, self.acc.device)
        # one schedule step per optimizer step, on every process: not prepared by accelerate, whose
        # wrapper would step it num_processes times per step (it expects a schedule sized for one
        # process's batches) and end warm-up and annealing early with several processes
        self.sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=options["lr"], total_steps=options["n_epochs"] * self.steps_per_epoch,
            pct_start=options["warmup"] / options["n_epochs"], anneal_strategy="cos")
        self.model, self.opt = self.acc.prepare(net, opt)
        if options.get("compile"):
            self.model = torch.compile(self.model)
        # one noise stream shared by all processes: each draws the whole step's noise (all processes'
        # images) and keeps its rows, so N processes at batch B/N train as one process at batch B
        self.noise_rng = torch.Generator(device=self.acc.device).manual_seed(options["seed"] * 1000 + 1)
        self.step, self.history = 0, []
        # the current epoch's loss so far (this process), kept in resume files so that a resumed
        # epoch logs its mean over all of its steps
        self.epoch_loss, self.epoch_steps = torch.zeros((), device=self.acc.device), 0

    # -- state -------------------------------------------------------------------------------

    @property
    def identity(self) -> dict[str, Any]:
        """This run's resume identity (see resume_identity); the schedule's length as the scheduler has it."""
        sched = getattr(self.sched, "scheduler", self.sched)
        return resume_identity(self.data_meta, self.n_images, int(sched.total_steps))

    @property
    def resume_path(self) -> Path:
        return self.out_dir / "resume.safetensors"

    @property
    def net(self) -> torch.nn.Module:
        """The UNet without its DDP and torch.compile wrappers (whose state dicts prefix the names)."""
        return self.acc.unwrap_model(self.model, keep_torch_compile=False)

    def save_resume(self) -> None:
        if not self.acc.is_main_process:
            return
        self._assert_finite_weights()
        states = {"model": self.net.state_dict(), "ema": self.ema.state_dict(),
                  "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
                  "rng": {"torch": torch.get_rng_state(), "noise": self.noise_rng.get_state()},
                  "epoch_loss": self.epoch_loss.detach().cpu()}
        meta = {"options": self.options, "step": self.step, "history": self.history,
                "world_size": self.acc.num_processes, "epoch_steps": self.epoch_steps, "identity": self.identity}
        save_resume(self.resume_path, states, meta)

    def try_resume(self) -> bool:
        """Continue from ``resume.safetensors`` when it exists; refuse one from other options."""
        if not self.resume_path.exists():
            return False
        states, meta = load_resume(self.resume_path)
        try:
            check_fields(meta, {"options": dict, "step": int, "history": list, "world_size": int},
                         sidecar(self.resume_path))
        except ValueError as err:
            raise CheckpointError(f"{err} (not a resume checkpoint of vsgm train; --restart starts over)") from None
        diff = sorted(k for k in set(meta["options"]) | set(self.options)
                      if k not in RESUME_FREE and meta["options"].get(k) != self.options.get(k))
        if diff:
            raise ValueError(f"{self.resume_path}: resume file from other options (differ: {diff}); "
                             "--restart starts over (or delete it)")
        mismatch = identity_mismatch(meta.get("identity"), self.identity)
        if mismatch:
            raise ValueError(f"{self.resume_path}: not resumed: {mismatch}; --restart starts over (or delete it)")
        if meta["world_size"] != self.acc.num_processes:
            raise ValueError(f"{self.resume_path}: written by {meta['world_size']} process(es), "
                             f"now {self.acc.num_processes}")
        # resume files of earlier versions saved a compiled model's names (prefix _orig_mod.)
        model_state = {k.replace("_orig_mod.", ""): v for k, v in states["model"].items()}
        load_state_strict(self.net, model_state, self.resume_path)
        load_state_strict(self.ema, states["ema"], self.resume_path)
        load_optimizer_state(self.opt, states["optimizer"])
        self.sched.load_state_dict(states["scheduler"])
        torch.set_rng_state(states["rng"]["torch"])
        self.noise_rng.set_state(states["rng"]["noise"])
        self.step, self.history = meta["step"], meta["history"]
        if "epoch_loss" in states:  # older resume files: the resumed epoch logs its remaining steps only
            self.epoch_loss, self.epoch_steps = states["epoch_loss"].to(self.acc.device), meta["epoch_steps"]
        log.warning("resumed from %s at step %d (epoch %d)", self.resume_path, self.step,
                    self.step // self.steps_per_epoch)
        return True

    def _assert_finite_weights(self) -> None:
        for name, p in self.net.named_parameters():
            if not torch.isfinite(p).all():
                raise TrainingDiverged(f"non-finite weights in {name} at step {self.step}; "
                                       "the last good checkpoint is kept")

    # -- loop ----------------------------------------------------------------------------------

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        o = self.options
        labels = None
        # this process's images sit at rows rank::world of the step's images (see ImageLoader.order)
        world, rank = self.acc.num_processes, self.acc.process_index
        if o["conditional"]:
            labels = drop_labels(y.repeat_interleave(world), o["drop_prob"], o["n_classes"],
                                 generator=self.noise_rng)[rank::world]
        t, noise = dsm_draws(x.new_empty((world * len(x), *x.shape[1:])), o["eps"], self.noise_rng)
        t, noise = t[rank::world].contiguous(), noise[rank::world].contiguous()
        loss = accumulate_dsm_gradients(self.acc, self.model, self.sde, x, t, noise, labels, self.micro_batch)
        self.opt.step()
        if not self.opt.step_was_skipped:  # an fp16 overflow skips the step, and its schedule step
            self.sched.step()
        self.opt.zero_grad(set_to_none=True)
        update_ema(self.ema, self.net, ema_decay(o["ema_rate"], self.step))
        self.step += 1
        return loss

    def run(self, resume: bool = True) -> dict[str, Any]:
        """Train to ``n_epochs``, resuming if possible; returns the final metadata."""
        o = self.options
        if resume:
            check_not_finished(self.out_dir)
            self.try_resume()
        tracking.start(self.acc, self.options, run_name=f"{self.dataset}")
        self.model.train()
        total = o["n_epochs"] * self.steps_per_epoch
        bar = progress(total=total, initial=self.step, disable=not self.acc.is_main_process, desc="train",
                       unit="steps")
        with _SigtermFlag() as sigterm:
            while self.step < total:
                epoch, skip = divmod(self.step, self.steps_per_epoch)
                self.loader.set_epoch(epoch)
                if not skip:
                    self.epoch_loss, self.epoch_steps = torch.zeros((), device=self.acc.device), 0
                timed, t0 = 0, time.perf_counter()
                bad = torch.full((), -1, device=self.acc.device, dtype=torch.long)
                for i, (x, y) in enumerate(self.loader):
                    if i < skip:
                        continue
                    loss = self.train_step(x, y)
                    # no host sync per step: remember the first non-finite step on the device
                    bad = torch.where((bad < 0) & ~torch.isfinite(loss), self.step - 1, bad)
                    self.epoch_loss += loss
                    self.epoch_steps += 1
                    timed += 1
                    bar.update(1)
                    if sigterm.raised:
                        self._check_finite(bad, epoch)
                        self.save_resume()
                        raise Preempted(f"{sigterm.raised} at step {self.step}; resume checkpoint written to "
                                        f"{self.resume_path}; run the same command again to continue",
                                        signal.Signals[sigterm.raised])
                    if o["save_every"] and self.step % o["save_every"] == 0:
                        self._check_finite(bad, epoch)
                        self.save_resume()
                self._check_finite(bad, epoch)
                mean_loss = self.acc.reduce(self.epoch_loss / max(self.epoch_steps, 1), reduction="mean").item()
                seconds = time.perf_counter() - t0
                row = {"epoch": epoch + 1, "step": self.step, "loss": mean_loss, "lr": self.sched.get_last_lr()[0],
                       "images_per_s": timed * o["batch_size"] * self.acc.num_processes / max(seconds, 1e-9)}
                self.history.append(row)
                bar.set_postfix(epoch=epoch + 1, loss=mean_loss, images_per_s=row["images_per_s"])
                bar.line()  # a log gets one line per epoch besides the timed ones
                self.acc.log(row, step=self.step)  # the trackers (--log_with), if any
                if (epoch + 1) % o["sample_and_save_freq"] == 0 and self.step < total:
                    self.save_progress_grid(epoch + 1)
                    self.save_resume()
        bar.close()
        self.acc.wait_for_everyone()
        return self.finish()

    def _check_finite(self, bad: torch.Tensor, epoch: int) -> None:
        step = int(bad.item())
        if step >= 0:
            where = f"{self.resume_path}" if self.resume_path.exists() else "none written yet"
            raise TrainingDiverged(f"loss became non-finite at step {step + 1} (epoch {epoch + 1}); "
                                   f"stopped; last good checkpoint kept: {where}")

    @torch.no_grad()
    def save_progress_grid(self, epoch: int) -> None:
        if not self.acc.is_main_process:
            return
        o = self.options
        g = torch.Generator(device=self.acc.device).manual_seed(o["seed"])
        y = None
        if o["conditional"]:
            y = torch.arange(o["num_samples"], device=self.acc.device) % o["n_classes"]
        score = make_score_fn(self.ema.eval(), self.sde, y=y, cfg=o["cfg"], null_label=o["n_classes"])
        shape = (o["num_samples"], self.input_channels, *([self.input_size] * o["dims"]))
        settings = SamplerSettings(num_steps=o["num_steps"], eps=o["eps"], snr=o["snr"], atol=o["atol"], rtol=o["rtol"])
        res = sample(score, self.sde, shape, spec_from_options(o), settings, generator=g, device=self.acc.device)
        if o["dims"] == 2:
            images = self.codec.decode(res.samples) if self.codec else res.samples
            save_image_grid(images, self.out_dir / "progress" / f"epoch_{epoch:04d}.png")
            tracking.log_image(self.acc, self.out_dir / "progress" / f"epoch_{epoch:04d}.png", self.step)

    def finish(self) -> dict[str, Any]:
        meta = {"options": self.options, "step": self.step, "epoch": self.options["n_epochs"],
                "channels": self.channels, "size": self.size, "dataset": self.dataset,
                **({"latent_channels": self.input_channels, "latent_size": self.input_size} if self.codec else {}),
                "final_loss": self.history[-1]["loss"] if self.history else None}
        if self.acc.is_main_process:
            self._assert_finite_weights()
            write_text(self.out_dir / "train.csv", history_csv(self.history))
            save_tensors(self.out_dir / "model.safetensors", self.ema.state_dict(), meta,
                         header=network_identity(meta))
            # the finished model supersedes the resume file (and a later run with other options must not trip on it)
            self.resume_path.unlink(missing_ok=True)
            sidecar(self.resume_path).unlink(missing_ok=True)
        self.acc.end_training()
        return meta


def history_csv(rows: list[dict[str, Any]]) -> str:
    """Training history as CSV text."""
    buf = io.StringIO()
    fields = ["epoch", "step", "loss", "lr", "images_per_s"]
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{r[k]:.6g}" if isinstance(r[k], float) else r[k]) for k in fields})
    return buf.getvalue()


def train(options: dict[str, Any], data_path: str | os.PathLike, out_dir: str | os.PathLike,
          resume: bool = True) -> dict[str, Any]:
    """Train a score model; see Trainer."""
    return Trainer(options, data_path, out_dir).run(resume=resume)
