"""Training: the loss goes down, checkpoints round-trip, bad input is refused, two DDP ranks agree."""

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from vsgm.checkpoint import CheckpointError
from vsgm.losses import dsm_loss_at
from vsgm.models import load_trained
from vsgm.options import defaults
from vsgm.train import TrainingDiverged, train

ROOT = Path(__file__).resolve().parents[1]


def test_training_lowers_the_loss_and_writes_a_loadable_model(tiny_options, digits_train, tmp_path):
    tiny_options.update(n_epochs=4)
    meta = train(tiny_options, digits_train, tmp_path)
    rows = (tmp_path / "train.csv").read_text().splitlines()
    losses = [float(r.split(",")[2]) for r in rows[1:]]
    assert len(losses) == 4 and losses[-1] < 0.7 * losses[0]
    assert meta["step"] == 4 * (1438 // 64)
    side = json.loads((tmp_path / "model.json").read_text())
    assert side["options"]["model_channels"] == 16 and side["versions"]["torch"] == torch.__version__
    model = load_trained(tmp_path / "model.safetensors")
    # the saved weights are the EMA weights and reproduce the training loss scale on real data
    from vsgm.data import load_prepared
    x = load_prepared(digits_train).images[:128].float() / 127.5 - 1
    g = torch.Generator().manual_seed(0)
    t = torch.rand(128, generator=g) * 0.999 + 0.001
    with torch.no_grad():
        loss = dsm_loss_at(model.net, model.sde, x, t, torch.randn(x.shape, generator=g)).mean().item()
    assert loss < losses[0]
    assert not (tmp_path / "resume.safetensors").exists()  # a finished run leaves no stale resume file


def test_same_seed_same_weights(tiny_options, digits_train, tmp_path):
    """Bit for bit, on a CPU and on CUDA: there training runs deterministic algorithms (vsgm.timing.
    deterministic_cuda); an op without one would warn, and the warning is the failure to read."""
    tiny_options.update(n_epochs=1, warmup=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(tiny_options, digits_train, tmp_path / "a")
        train(tiny_options, digits_train, tmp_path / "b")
    assert not [str(w.message) for w in caught if "deterministic" in str(w.message)]
    a, b = (load_file(tmp_path / d / "model.safetensors") for d in "ab")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_conditional_training_and_guided_sampling(tiny_options, digits_train, tmp_path):
    from vsgm.sample_batches import draw
    from vsgm.samplers import SamplerSettings, parse_sampler

    tiny_options.update(n_epochs=1, warmup=0, conditional=True, n_classes=10)
    train(tiny_options, digits_train, tmp_path)
    model = load_trained(tmp_path / "model.safetensors")
    assert model.net.label_emb.num_embeddings == 11
    images_through_net = []
    model.net.register_forward_hook(lambda module, args, out: images_through_net.append(len(args[0])))
    samples, cost = draw(model, parse_sampler("em"), 6, 4, SamplerSettings(num_steps=5, eps=1e-3), cfg=3.0)
    assert samples.shape == (6, 1, 8, 8) and cost["nfe"] == 5
    # each guided score runs the network on the conditional and the unconditional copy of every image
    # (the first pass is the untimed warm-up of sampling, vsgm.samplers.warm_up: one guided score of a batch)
    assert images_through_net[0] == 2 * 4
    assert cost["network_evals"] == sum(images_through_net[1:]) / 6 == 10


@pytest.mark.parametrize("first_bytes", [b"\x80", b"PK"])
def test_safetensors_whose_header_length_looks_like_a_pickle_or_zip_load(tmp_path, first_bytes):
    """The header length comes first (little-endian), so some valid files begin like a pickle (0x80)
    or a zip (PK); the pickle guard must not refuse them."""
    from vsgm.checkpoint import load_tensors, save_tensors

    path = tmp_path / "m.safetensors"

    def header_length(n: int) -> int:  # of a file whose one tensor has an n-character name
        save_tensors(path, {"k" * n: torch.arange(3.0)}, {"n": n})
        return int.from_bytes(path.read_bytes()[:8], "little")

    target = int.from_bytes(first_bytes, "little") + 256 ** len(first_bytes)  # past the header of n = 1
    start = target - header_length(1)
    n = next(n for n in range(start - 8, start + 9) if header_length(n) % 256 ** len(first_bytes)
             == target % 256 ** len(first_bytes))
    assert path.read_bytes().startswith(first_bytes)
    tensors, meta = load_tensors(path)
    assert torch.equal(tensors["k" * n], torch.arange(3.0)) and meta["n"] == n


def test_nan_loss_stops_with_step_and_epoch(tiny_options, digits_train, tmp_path):
    """Weights scaled far beyond float32 (vsgm refuses a learning rate that would get there, --lr above 10)."""
    from vsgm.train import Trainer

    tiny_options.update(n_epochs=2, save_every=0)
    trainer = Trainer(tiny_options, digits_train, tmp_path)
    with torch.no_grad():
        for p in trainer.acc.unwrap_model(trainer.model).parameters():
            p.mul_(1e30)
    with pytest.raises(TrainingDiverged, match=r"non-finite at step \d+ \(epoch 1\)"):
        trainer.run()
    assert not (tmp_path / "model.safetensors").exists()


@pytest.mark.parametrize("change,message", [
    (dict(n_epochs=2, warmup=5), "warmup"),
    (dict(batch_size=5000), "larger than the training set"),
    (dict(attention_resolutions=[8]), "not downsample rates"),
    (dict(num_head_channels=24), "does not divide"),
    (dict(channel_mult=[]), "must not be empty"),
    (dict(cfg=3.0), "needs a conditional model"),
])
def test_impossible_options_refused_before_training(tiny_options, digits_train, tmp_path, change, message):
    tiny_options.update(change)
    with pytest.raises(ValueError, match=message):
        train(tiny_options, digits_train, tmp_path)
    assert not any(tmp_path.iterdir())


def test_checkpoint_errors_name_the_file(tiny_model, tmp_path):
    for name in ("model.safetensors", "model.json"):  # a copy of the shared model, which stays read-only
        shutil.copy(tiny_model.parent / name, tmp_path / name)
    path = tmp_path / "model.safetensors"
    data = path.read_bytes()
    truncated = tmp_path / "trunc" / "model.safetensors"
    truncated.parent.mkdir()
    truncated.write_bytes(data[: len(data) // 2])
    (truncated.parent / "model.json").write_text((tmp_path / "model.json").read_text())
    with pytest.raises(CheckpointError, match=f"{truncated}.*truncated or corrupt"):
        load_trained(truncated)
    pickled = tmp_path / "pickle" / "model.safetensors"
    pickled.parent.mkdir()
    torch.save({"w": torch.zeros(1)}, pickled)
    with pytest.raises(CheckpointError, match="pickle.*never unpickles"):
        load_trained(pickled)
    other = json.loads((tmp_path / "model.json").read_text())
    other["options"]["model_channels"] = 32
    (tmp_path / "model.json").write_text(json.dumps(other))
    with pytest.raises(CheckpointError, match="options.model_channels disagree.*network recorded in"):
        load_trained(path)  # the weights file's header says what the network was
    save_file(load_file(str(path)), str(path))  # as written before the header entry: the weights still disagree
    with pytest.raises(CheckpointError, match="does not match this architecture.*shape mismatch"):
        load_trained(path)


def test_sampling_options_shape_the_progress_grid_and_do_not_block_resume(tiny_options, digits_train, tmp_path,
                                                                          monkeypatch, caplog):
    import vsgm.train as vt

    used = []
    real_sample = vt.sample
    monkeypatch.setattr(vt, "sample", lambda *a, **kw: used.append(a[3].name) or real_sample(*a, **kw))
    tiny_options.update(n_epochs=2, warmup=0, sample_and_save_freq=1, sampler_type="ODE", solver="rk4",
                        grid="logstd", num_steps=2, num_samples=4)
    trainer = vt.Trainer(tiny_options, digits_train, tmp_path)
    original = trainer.train_step

    def stop_in_epoch_two(x, y):
        if trainer.step == trainer.steps_per_epoch + 1:
            raise KeyboardInterrupt
        return original(x, y)

    trainer.train_step = stop_in_epoch_two
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    assert used == ["ode-rk4-logstd"] and (tmp_path / "progress" / "epoch_0001.png").exists()
    with caplog.at_level("WARNING", logger="vsgm.train"):
        meta = train(dict(tiny_options, sampler_type="PC", num_samples=2), digits_train, tmp_path)
    assert "resumed from" in caplog.text and meta["step"] == 2 * trainer.steps_per_epoch


def test_training_says_where_the_time_embedding_is_lost(tiny_options, digits_train, tmp_path, caplog):
    tiny_options.update(n_epochs=1, warmup=0)
    with caplog.at_level("WARNING", logger="vsgm.train"):
        train(tiny_options, digits_train, tmp_path / "blind")  # widths 16 and 32: blind to t
    assert "width(s) [16, 32]" in caplog.text and "cannot depend on the noise level at all" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="vsgm.train"):
        train(dict(tiny_options, use_scale_shift_norm=True), digits_train, tmp_path / "film")
    assert "time embedding" not in caplog.text


def test_precisions_this_cpu_lacks_fall_back_to_fp32_and_say_why(digits_train, tmp_path):
    """accelerate quietly drops fp16 autocast without CUDA, and emulates bf16 on a CPU without native bf16 (a
    thousand times slower): the user is told, and the run is plain fp32, bit for bit. VSGM_CPU_BF16=0 makes
    this CPU one without native bf16. (One process per run: accelerate keeps one precision per process.)"""
    def run(precision, **env):
        cmd = [sys.executable, "-m", "vsgm.cli", "train", "--data", str(digits_train), "--out_dir",
               str(tmp_path / precision), "--dataset", "digits", "--model_channels", "16", "--num_res_blocks", "1",
               "--channel_mult", "1", "2", "--attention_resolutions", "2", "--num_head_channels", "16",
               "--n_epochs", "1", "--warmup", "0", "--sample_and_save_freq", "100", "--no_wandb",
               "--mixed_precision", precision]
        proc = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "2", **env}, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stderr, load_file(str(tmp_path / precision / "model.safetensors"))

    said, fp16 = run("fp16")
    assert "--mixed_precision fp16 needs a CUDA device; this CPU run uses fp32" in said
    said, bf16 = run("bf16", VSGM_CPU_BF16="0")
    assert "--mixed_precision bf16 needs native bf16 (AVX512-BF16 or AMX), which this CPU lacks" in said
    said, fp32 = run("no")
    assert "fp16" not in said and "bf16" not in said
    assert all(torch.equal(fp16[k], fp32[k]) and torch.equal(bf16[k], fp32[k]) for k in fp32)


def test_optimizer_state_from_a_resume_file_continues_exactly(tmp_path):
    """Channels-last weights, fused AdamW: the moments read back from a resume file (contiguous) must
    continue the run bit for bit, as if they had never left memory."""
    from vsgm.checkpoint import load_resume, save_resume
    from vsgm.step import adamw, load_optimizer_state

    def build():
        torch.manual_seed(0)
        conv = torch.nn.Conv2d(4, 6, 3).to(memory_format=torch.channels_last)
        return conv, adamw(conv.parameters(), 1e-2, 0.0, torch.device("cpu"))

    def step(conv, opt, i):
        x = torch.randn(2, 4, 5, 5, generator=torch.Generator().manual_seed(i))
        conv(x.contiguous(memory_format=torch.channels_last)).pow(2).mean().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    conv, opt = build()
    for i in range(3):
        step(conv, opt, i)
    save_resume(tmp_path / "r.safetensors", {"model": conv.state_dict(), "optimizer": opt.state_dict()}, {})
    step(conv, opt, 3)

    again, opt2 = build()
    states, _ = load_resume(tmp_path / "r.safetensors")
    again.load_state_dict(states["model"])
    load_optimizer_state(opt2, states["optimizer"])
    assert opt2.state[again.weight]["exp_avg"].stride() == again.weight.stride()
    step(again, opt2, 3)
    assert torch.equal(again.weight, conv.weight) and torch.equal(again.bias, conv.bias)


@pytest.mark.parametrize("micro_batch", [3, 4])
def test_micro_batches_add_up_to_the_whole_batch_gradient(tiny_options, micro_batch):
    from accelerate import Accelerator

    from vsgm.losses import dsm_draws
    from vsgm.unet_config import UNetConfig
    from vsgm.sde import VESDE
    from vsgm.step import accumulate_dsm_gradients
    from vsgm.unet import UNetModel

    torch.manual_seed(0)
    net, sde, acc = UNetModel(UNetConfig.from_options(tiny_options, 1, 8)), VESDE(25.0), Accelerator(cpu=True)
    for p in net.parameters():  # zero-initialised output layers would leave most gradients at zero
        torch.nn.init.normal_(p, std=0.1)
    x = torch.rand(10, 1, 8, 8) * 2 - 1
    t, noise = dsm_draws(x, 1e-3, torch.Generator().manual_seed(1))

    def grads(chunk):
        net.zero_grad()
        loss = accumulate_dsm_gradients(acc, net, sde, x, t, noise, None, chunk)
        return loss, [p.grad.clone() for p in net.parameters()]

    loss_whole, whole = grads(len(x))
    loss_parts, parts = grads(micro_batch)  # 10 images in 4 or 3 unequal chunks
    torch.testing.assert_close(loss_parts, dsm_loss_at(net, sde, x, t, noise).mean().detach(), rtol=1e-5, atol=0)
    torch.testing.assert_close(loss_parts, loss_whole, rtol=1e-5, atol=0)
    for a, b in zip(parts, whole):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_micro_batch_is_automatic_on_cpu_and_whole_on_gpu(tiny_options):
    from vsgm.models import micro_batch_size

    seed_unet = dict(tiny_options, model_channels=64, channel_mult=[1, 2, 2], batch_size=128, micro_batch=0)
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert micro_batch_size(seed_unet, 32, cpu) == 32  # a 64-channel 32x32 map is 256 KiB per image
    assert micro_batch_size(seed_unet, 8, cpu) == 128  # small maps: the whole batch
    assert micro_batch_size(seed_unet, 32, gpu) == 128
    assert micro_batch_size(dict(seed_unet, micro_batch=16), 32, gpu) == 16


def launch_worker(processes: int, out: Path, *args, worker: str = "ddp_worker.py") -> None:
    """A test worker under accelerate launch: ``processes`` gloo ranks on the CPU (a free port each run)."""
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    multi = ["--multi_gpu", "--main_process_port", "0"] if processes > 1 else []
    cmd = [sys.executable, "-m", "accelerate.commands.launch", *multi, "--num_processes", str(processes),
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           str(ROOT / "tests" / worker), *map(str, args)]
    out.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.slow
def test_two_ddp_ranks_on_cpu_end_with_identical_weights(digits_train, tmp_path):
    launch_worker(2, tmp_path, digits_train, tmp_path)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["distributed"] == "MULTI_CPU" and ranks[0]["world"] == 2
    assert ranks[0]["checksum"] == ranks[1]["checksum"]
    assert ranks[0]["steps"] == ranks[1]["steps"] > 0


@pytest.mark.slow
def test_two_ranks_at_half_the_batch_train_as_one_process(digits_train, tmp_path):
    """Two gloo ranks at batch 32 each against one process at batch 64, two epochs with one of warm-up: the
    learning rate of every step is the same (the schedule counts optimizer steps, not process steps), and so
    are the final weights within float rounding (each rank draws the noise of its own rows of the step).

    Rounding: AdamW divides by the root of tiny second moments, so summation-order differences grow to
    about 1e-3 of the weights' norm over the run; one process whose batch only runs in other micro-batches
    measured the same 1e-3 (median element 5e-9). Before the fix the schedule ran twice as fast."""
    launch_worker(2, tmp_path / "two", digits_train, tmp_path / "two", 32, 32, 2, 1)
    launch_worker(1, tmp_path / "one", digits_train, tmp_path / "one", 64, 64, 2, 1)
    two, one = (json.loads((tmp_path / d / "rank0.json").read_text()) for d in ("two", "one"))
    assert two["world"] == 2 and one["world"] == 1
    assert two["steps"] == one["steps"] == len(one["lrs"]) > 10
    assert two["lrs"] == pytest.approx(one["lrs"], rel=1e-12)
    lr = defaults()["lr"]
    assert max(one["lrs"]) == pytest.approx(lr) and one["lrs"][-1] < lr / 100  # warmed up, then annealed
    w2, w1 = (load_file(str(tmp_path / d / "rank0.safetensors")) for d in ("two", "one"))
    assert w2.keys() == w1.keys()
    a, b = (torch.cat([w[k].flatten() for k in sorted(w1)]) for w in (w2, w1))
    assert (a - b).norm() < 3e-3 * b.norm()
    assert (a - b).abs().median() < 1e-6


@pytest.mark.slow
def test_no_sync_reaches_ddp_through_torch_compile(tmp_path):
    """With --compile the trainer holds torch.compile(DDP(net)): accelerate's no_sync must still skip the
    gradient all-reduce (micro-batches but the last) and the next backward must average across ranks."""
    launch_worker(2, tmp_path, tmp_path, worker="ddp_compile_worker.py")
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["compiled"] == "OptimizedModule"
    assert r0["local"] != r1["local"]  # each rank kept its own gradient under no_sync
    for a, b in zip(r0["synced"], r1["synced"], strict=True):
        assert a == pytest.approx(b, rel=1e-6)  # then the all-reduce averaged both backward passes
    for a, b, la, lb in zip(r0["synced"], r1["synced"], r0["local"], r1["local"], strict=True):
        assert a == pytest.approx([(x + y) for x, y in zip(la, lb)], rel=1e-5)  # mean of 2 ranks x 2 passes
