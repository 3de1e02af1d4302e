"""The sample-quality numbers: the offline classifier FD, and FID in Inception-v3 features when its weights
are on disk: torchvision's Inception-v3 and torch-fidelity's FID graph, each with a real state-dict file
(random weights here, since nothing is downloaded in tests), the latter checked against torch-fidelity's own
FID."""

import json

import numpy as np
import pytest
import torch

from vsgm.cli import main
from vsgm.data import load_prepared
from vsgm.metrics import frechet_distance
from vsgm.quality import fid_entries, inception_features, load_inception


@pytest.fixture(scope="module")
def inception_weights(tmp_path_factory):
    from torchvision.models import inception_v3

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("torch_home") / "hub" / "checkpoints" / "inception_v3_google-0cc3c7bd.pth"
    path.parent.mkdir(parents=True)
    torch.save(inception_v3(weights=None, aux_logits=True, init_weights=True).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def tf_inception_weights(inception_weights):
    """torch-fidelity's FID Inception with random weights, saved where its cache would hold the real ones
    (beside torchvision's file)."""
    import torch_fidelity.feature_extractor_inceptionv3 as tfi

    torch.manual_seed(1)
    with pytest.MonkeyPatch.context() as mp:  # build the network without its download and weight loading
        mp.setattr(tfi, "load_state_dict_from_url", lambda *a, **k: {})
        mp.setattr(tfi.FeatureExtractorInceptionV3, "load_state_dict", lambda self, *a, **k: None)
        net = tfi.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    path = inception_weights.parent / "weights-inception-2015-12-05-6726825d.pth"
    torch.save(net.state_dict(), path)
    return path


def _fid(net, a, b):
    return frechet_distance(inception_features(net, a).double().numpy(), inception_features(net, b).double().numpy())


def test_inception_fid_is_zero_for_the_same_images_and_grows_with_a_shift(inception_weights):
    net = load_inception(inception_weights)
    g = torch.Generator().manual_seed(0)
    gray = torch.rand(6, 1, 8, 8, generator=g) * 2 - 1
    feats = inception_features(net, gray, batch_size=4)
    assert feats.shape == (6, 2048)
    # a gray image is read as the same image in all three channels
    assert torch.allclose(feats, inception_features(net, gray.expand(-1, 3, -1, -1)), atol=1e-5)
    assert _fid(net, gray, gray) == 0.0
    assert _fid(net, gray, (gray + 0.5).clamp(-1, 1)) > 0


def test_the_fid_graphs_fid_is_torch_fidelitys(tf_inception_weights):
    """vsgm's FID in the TensorFlow FID graph (torch-fidelity's network, 8-bit RGB input) against
    torch-fidelity's own end-to-end FID of the same images: gray [-1, 1] images become the 8-bit RGB
    images torch-fidelity is given."""
    import torch_fidelity

    g = torch.Generator().manual_seed(0)
    a = torch.rand(10, 1, 8, 8, generator=g) * 2 - 1
    b = (torch.rand(10, 1, 8, 8, generator=g) * 1.5 - 0.5).clamp(-1, 1)

    class Images(torch.utils.data.Dataset):
        def __init__(self, x):
            self.x = ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).expand(-1, 3, -1, -1)

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return self.x[i]

    theirs = torch_fidelity.calculate_metrics(input1=Images(a), input2=Images(b), fid=True, cuda=False,
                                              verbose=False, batch_size=4, save_cpu_ram=True,
                                              feature_extractor_weights_path=str(tf_inception_weights))
    ours = fid_entries("fid_tf_inception", tf_inception_weights, a, b)
    assert ours["fid_tf_inception"] == pytest.approx(theirs["frechet_inception_distance"], rel=1e-4)
    assert ours["fid_tf_inception"] > 0 and fid_entries("fid_tf_inception", tf_inception_weights, a, a)[
        "fid_tf_inception"] == pytest.approx(0, abs=1e-6)
    assert fid_entries("fid_tf_inception", "none", a, b)["fid_tf_inception_note"] == \
        "skipped: --tf_inception_weights none"
    from vsgm.quality import FID_KINDS
    from vsgm.tables import FID_KEYS

    assert tuple(FID_KINDS) == FID_KEYS  # the solver table (torch-free) carries every FID the JSON has


def test_inception_weights_must_be_a_state_dict_of_inception(tmp_path):
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="other.pth"):
        load_inception(tmp_path / "other.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not Inception-v3 weights"):
        load_inception(tmp_path / "junk.pth")


def test_vsgm_quality_adds_fid_when_weights_are_on_disk_and_says_why_not(tmp_path, digits_train,
                                                                         inception_weights, tf_inception_weights,
                                                                         monkeypatch):
    from vsgm.data import prepare

    reference = tmp_path / "test.safetensors"  # a few test images: Inception reads each at 299x299
    prepare("digits", "test", tmp_path / "data", reference, size=8, channels=1, max_images=12)
    clf = tmp_path / "clf.safetensors"
    assert main(["classifier", "--data", str(digits_train), "--out", str(clf), "--epochs", "1"]) == 0
    images = load_prepared(digits_train).images[:8].float() / 127.5 - 1
    np.savez(tmp_path / "s.npz", samples=images.numpy())
    (tmp_path / "s.json").write_text(json.dumps({"sampler": "em", "dataset": "digits"}))

    def quality(*extra):
        out = tmp_path / "q.json"
        assert main(["quality", "--classifier", str(clf), "--samples", str(tmp_path / "s.npz"),
                     "--reference", str(reference), "--out", str(out), "--overwrite", *extra]) == 0
        return json.loads(out.read_text())

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))  # auto: torchvision's cache, here without weights
    q = quality()
    assert q["fid_inception"] is None and "no weights at" in q["fid_inception_note"]
    assert q["fid_tf_inception"] is None and "weights-inception-2015-12-05" in q["fid_tf_inception_note"]
    assert quality("--inception_weights", "none")["fid_inception"] is None
    monkeypatch.setenv("TORCH_HOME", str(inception_weights.parents[2]))  # auto finds them
    q = quality()
    assert q["fid_inception"] > 0 and "fid_inception_note" not in q
    assert q["fid_tf_inception"] > 0 and q["fid_tf_inception"] != q["fid_inception"]
    assert quality("--inception_weights", str(inception_weights))["fid_inception"] == q["fid_inception"]
    # with training images, also the real-vs-real floor at the same count
    q = quality("--train_reference", str(digits_train))
    assert q["fid_inception_test_vs_train"] > 0 and q["fd_test_vs_train"] > 0 and q["fid_tf_inception_test_vs_train"] > 0
    assert main(["quality", "--classifier", str(clf), "--samples", str(tmp_path / "s.npz"), "--reference",
                 str(reference), "--out", str(tmp_path / "x.json"), "--inception_weights",
                 str(tmp_path / "missing.pth")]) != 0


def test_classifier_trains_on_a_seeded_capped_subset(digits_train, tmp_path):
    """Big splits train the feature classifier on a seeded subset (its cost is per image): the same
    subset for the same seed, every image below the cap, and the file says how many it saw."""
    from vsgm.checkpoint import load_tensors
    from vsgm.quality import classifier_subset

    a, b, c = classifier_subset(1000, 100, 0), classifier_subset(1000, 100, 0), classifier_subset(1000, 100, 1)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len(a) == 100 and len(set(a.tolist())) == 100 and bool((a.diff() > 0).all()) and int(a.max()) < 1000
    assert torch.equal(classifier_subset(50, 100, 0), torch.arange(50))
    assert torch.equal(classifier_subset(1000, 0, 0), torch.arange(1000))
    clf = tmp_path / "clf.safetensors"
    assert main(["classifier", "--data", str(digits_train), "--out", str(clf), "--epochs", "1",
                 "--max_images", "300", "--device", "cpu"]) == 0
    _, meta = load_tensors(clf)
    assert meta["images"] == 300


def test_paired_table_tells_noise_from_digits_and_joins_the_solver_table(tmp_path, digits_train):
    """All samplers of one model in one paired bootstrap (vsgm.paired_quality): a sampler returning training
    digits is the best, one returning uniform noise is told apart from it, the real training images join as
    their own row, and the solver table gains each row's difference to the best sampler."""
    from vsgm.data import prepare
    from vsgm.paired_quality import paired_table
    from vsgm.report import quality_captions
    from vsgm.tables import REAL_ROW, solvers_table

    reference = tmp_path / "test.safetensors"
    prepare("digits", "test", tmp_path / "data", reference, size=8, channels=1, max_images=120)
    clf = tmp_path / "clf.safetensors"
    assert main(["classifier", "--data", str(digits_train), "--out", str(clf), "--epochs", "1"]) == 0
    digits = load_prepared(digits_train).images[-60:].float() / 127.5 - 1
    noise = torch.rand(60, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    npzs, jsons = [], []
    for name, x in (("em", digits), ("ode-euler", noise)):
        np.savez(tmp_path / f"{name}.npz", samples=x.numpy())
        (tmp_path / f"{name}.json").write_text(json.dumps(
            {"sampler": name, "dataset": "digits", "model": "digits", "nfe": 10, "seconds": 1.0,
             "samples_per_s": 60.0, "num_samples": 60}))
        npzs.append(tmp_path / f"{name}.npz")
        jsons.append(tmp_path / f"{name}.json")
    table = paired_table("digits", clf, npzs, reference, digits_train, n_boot=50).set_index("sampler")
    assert list(table.index) == ["em", "ode-euler", REAL_ROW] and (table["n_reference"] == 120).all()
    for m in ("fd", "kid", "recall"):  # (a classifier of one epoch puts much noise among the digits' features)
        assert (table[f"{m}_vs"] == "em").all() and table.loc["em", f"{m}_diff"] == 0
        assert table.loc["ode-euler", f"{m}_distinct"] and not table.loc["em", f"{m}_distinct"]
        assert not table.loc[REAL_ROW, f"{m}_distinct"]  # real training images: not told from the best sampler
    assert table.loc["ode-euler", "fd_diff_lo"] > 0 and table.loc["ode-euler", "recall_diff_hi"] < 0
    table.reset_index().to_csv(tmp_path / "paired.csv", index=False)
    solvers = solvers_table(jsons, [], [tmp_path / "paired.csv"]).set_index("sampler")
    assert solvers.loc["ode-euler", "kid_distinct"] and solvers.loc["em", "kid_vs"] == "em"
    # the montage's captions end a metric's line with the difference only where the paired interval tells it apart
    captions = quality_captions(table.reset_index())
    fd_line = {s: next(line for line in captions[("digits", s)].splitlines() if line.startswith("FD "))
               for s in ("em", "ode-euler")}
    assert fd_line["ode-euler"].endswith(f"; +{table.loc['ode-euler', 'fd_diff']:.2f} vs em"), fd_line
    assert "vs" not in fd_line["em"] and "vs" not in captions[("digits", REAL_ROW)].split("recall")[1]
    (tmp_path / "bad.csv").write_text("model,sampler\ndigits,em\n")
    with pytest.raises(ValueError, match="not a paired comparison"):
        solvers_table(jsons, [], [tmp_path / "bad.csv"])
