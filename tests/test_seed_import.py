"""vsgm import-seed: the seed's checkpoints (torch.save of its EMA state dict) give the seed's score.

The two test vectors were computed with the seed's own network (its ADM UNet, parameters set by a
formula, the seed's t and output conventions); here a state dict with the seed's key names is built by
the same formula, saved with torch.save, imported through the CLI and scored through vsgm.score_function.
"""

import json
import math
import pickle
from pathlib import Path

import pytest
import torch

from vsgm.cli import main
from vsgm.models import load_trained
from vsgm.score_function import make_score_fn, network_output

KEYS_FILE = Path(__file__).parent / "data" / "seed_unet_keys.txt"
FLAGS = ["--model_channels", "32", "--num_res_blocks", "1", "--channel_mult", "1", "2",
         "--attention_resolutions", "2", "--num_head_channels", "16", "--num_heads", "4"]
# (output sum, output[0, 0, 0, :4], output[1, 0, 8, :4]) of the seed's network
VECTORS = {
    False: (25.010002929717302, [0.049205, 0.0466, 0.046265, 0.046265], [0.049713, 0.048333, 0.047335, 0.046943]),
    True: (18.650141537189484, [0.036629, 0.034224, 0.033704, 0.033618], [0.037627, 0.036205, 0.034464, 0.033949]),
}


def seed_keys(conditional: bool) -> list[tuple[str, tuple[int, ...]]]:
    rows = []
    for line in KEYS_FILE.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, shape = line.split(" ", 1)
        if name == "label_emb.weight" and not conditional:
            continue
        rows.append((name, tuple(int(s) for s in shape.strip("()").split(",") if s.strip())))
    return rows


def seed_state(conditional: bool) -> dict[str, torch.Tensor]:
    """The note's formula: key i -> 0.05 * sin(arange(numel) * 0.731 + i), float64 then float32."""
    state = {}
    for i, (name, shape) in enumerate(seed_keys(conditional)):
        numel = math.prod(shape)
        state[name] = (0.05 * torch.sin(torch.arange(numel, dtype=torch.float64) * 0.731 + i)).reshape(shape).float()
    return state


def import_vector(tmp_path, conditional: bool, state=None) -> Path:
    ckpt = tmp_path / "VanSGM_digits.pt"
    torch.save(state if state is not None else seed_state(conditional), ckpt)
    out = tmp_path / "model"
    flags = FLAGS + (["--conditional"] if conditional else [])
    assert main(["import-seed", "--checkpoint", str(ckpt), "--dataset", "digits", "--size", "16",
                 "--out_dir", str(out), *flags]) == 0
    return out / "model.safetensors"


@pytest.mark.parametrize("conditional", [False, True])
def test_seed_vectors_through_import_seed(tmp_path, conditional):
    assert len(seed_keys(conditional)) == (129 if conditional else 128)
    path = import_vector(tmp_path, conditional)
    model = load_trained(path)
    x = torch.cos(torch.arange(2 * 16 * 16, dtype=torch.float64) * 0.13).reshape(2, 1, 16, 16).float()
    t = torch.tensor([0.01, 0.5])
    y = torch.tensor([3, 10]) if conditional else None
    with torch.no_grad():
        s = make_score_fn(load_trained(path).net, load_trained(path).sde, y=y)(x, t)
        scaled = network_output(model.net, x, t, y, model.sde)  # what the OOD features and the loss see
    total, row0, row1 = VECTORS[conditional]
    assert s.sum().item() == pytest.approx(total, rel=1e-5)
    torch.testing.assert_close(s[0, 0, 0, :4], torch.tensor(row0), atol=1e-6, rtol=0)
    torch.testing.assert_close(s[1, 0, 8, :4], torch.tensor(row1), atol=1e-6, rtol=0)
    std = model.sde.marginal_std(t).reshape(2, 1, 1, 1)
    torch.testing.assert_close(scaled, s * std)
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["parametrisation"] == "seed" and meta["options"]["conditional"] is conditional
    assert (path.parent / "train.csv").read_text().startswith("epoch,step,loss")


def test_imported_model_samples(tmp_path):
    """Sampling runs through the same score: an EM sample of the imported model is finite."""
    path = import_vector(tmp_path, False)
    out = tmp_path / "s" / "em"
    assert main(["sample", "--checkpoint", str(path), "--sampler", "em", "--num_steps", "3", "--num_samples", "2",
                 "--device", "cpu", "--out", str(out)]) == 0
    import numpy as np

    with np.load(f"{out}.npz") as z:
        arrays = [z[k] for k in z.files]
    assert all(np.isfinite(a.astype(float)).all() for a in arrays)


class Payload:
    def __reduce__(self):
        return (print, ("unpickled code ran",))


def test_pickle_with_code_refused(tmp_path, capsys):
    ckpt = tmp_path / "evil.pt"
    torch.save({"time_embed.0.weight": torch.zeros(2), "x": Payload()}, ckpt)
    code = main(["import-seed", "--checkpoint", str(ckpt), "--dataset", "digits", "--size", "16",
                 "--out_dir", str(tmp_path / "m"), *FLAGS])
    err = capsys.readouterr()
    assert code == 1 and "unpickled code ran" not in err.out
    assert err.err.count("\n") == 1 and "needs code to unpickle" in err.err and str(ckpt) in err.err
    assert not (tmp_path / "m" / "model.safetensors").exists()
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(Payload()))
    assert main(["import-seed", "--checkpoint", str(raw), "--dataset", "digits", "--size", "16",
                 "--out_dir", str(tmp_path / "m"), *FLAGS]) == 1
    assert "unpickled code ran" not in capsys.readouterr().out


@pytest.mark.parametrize("change, named", [
    (lambda s: s.pop("input_blocks.3.1.qkv.weight"), "'input_blocks.3.1.qkv.weight' is missing"),
    (lambda s: s.pop("input_blocks.1.0.out_layers.3.bias"), "'input_blocks.1.0.out_layers.3.bias' is missing"),
    (lambda s: s.update({"input_blocks.1.0.in_layers.2.weight": torch.zeros(32, 32, 1, 1)}),
     "'input_blocks.1.0.in_layers.2.weight' has shape (32, 32, 1, 1)"),
    (lambda s: s.update({"decoder.weight": torch.zeros(1)}), "'decoder.weight' has no place"),
])
def test_mismatch_names_the_key(tmp_path, capsys, change, named):
    state = seed_state(False)
    change(state)
    ckpt = tmp_path / "VanSGM_digits.pt"
    torch.save(state, ckpt)
    assert main(["import-seed", "--checkpoint", str(ckpt), "--dataset", "digits", "--size", "16",
                 "--out_dir", str(tmp_path / "m"), *FLAGS]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and named.split(" (")[0] in err


def test_wrong_flags_name_a_key(tmp_path, capsys):
    """A conditional checkpoint imported without --conditional: label_emb.weight has no place."""
    ckpt = tmp_path / "VanSGM_digits.pt"
    torch.save(seed_state(True), ckpt)
    assert main(["import-seed", "--checkpoint", str(ckpt), "--dataset", "digits", "--size", "16",
                 "--out_dir", str(tmp_path / "m"), *FLAGS]) == 1
    assert "'label_emb.weight' has no place" in capsys.readouterr().err
