"""Every input checked at the door (issue: nothing wrong that looks right).

The tables are built from the parser itself, so an option added later is covered without editing
them: every numeric option refuses NaN, infinities, huge and out-of-range values at parsing with one
line naming the flag, before anything is written.
"""

import argparse
import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest

from vsgm.cli import build_parser, main
from vsgm.domains import Number
from vsgm.io import write_json

BAD_VALUES = ["nan", "inf", "-inf", "-1", "0", "1e30", str(10**30)]
NEVER = {"nan", "inf", "-inf", "1e30", str(10**30)}  # no option may take these


def _subcommands():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


def _required_argv(p: argparse.ArgumentParser) -> list[str]:
    """Placeholder values for the required options (parsing does not open files)."""
    argv = []
    for a in p._actions:
        if a.required and a.option_strings:
            value = str(a.choices[0]) if a.choices else "1" if isinstance(a.type, Number) else "x"
            argv += [a.option_strings[0], value]
    return argv


def _numeric_options():
    """(command, flag, type, choices) of every option that parses a number."""
    for name, p in _subcommands().items():
        for a in p._actions:
            if not a.option_strings or a.type in (None, str, str.upper) or isinstance(a.type, type(str.upper)):
                continue
            yield name, a.option_strings[0], a.type, a.choices


NUMERIC = list(_numeric_options())


def test_the_table_covers_the_commands():
    commands = {c for c, *_ in NUMERIC}
    assert {"train", "sample", "features", "score", "pair", "ood", "classifier", "sweep", "prepare", "bench",
            "download"} <= commands
    assert len(NUMERIC) > 60


@pytest.mark.parametrize("command, flag, kind, choices", NUMERIC, ids=[f"{c} {f}" for c, f, *_ in NUMERIC])
def test_every_numeric_option_refuses_bad_values_in_one_line(command, flag, kind, choices, tmp_path,
                                                             monkeypatch, capsys):
    """A Number type says what it takes; anything else (plain int/float) must be bounded by choices."""
    assert isinstance(kind, Number) or choices, f"vsgm {command} {flag}: a number needs a vsgm.domains range"
    monkeypatch.chdir(tmp_path)
    base = [command, *_required_argv(_subcommands()[command])]
    for text in BAD_VALUES:
        try:
            value = kind(text)
            accepted = value in choices if choices else True
        except (argparse.ArgumentTypeError, ValueError, TypeError):
            accepted = False
        if accepted:  # the option's documented range holds it: never NaN, inf or huge; negative only -1
            assert text not in NEVER and (text != "-1" or -1 in getattr(kind, "also", ())), (flag, text)
            continue
        with pytest.raises(SystemExit) as err:
            main([*base, f"{flag}={text}"])  # "=": argparse reads a bare "-inf" as an option
        assert err.value.code == 2, (flag, text)
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and f"argument {flag}" in lines[0], (flag, text, lines)
        assert not any(tmp_path.iterdir()), (flag, text)


def test_domains_refuse_what_argparse_would_let_through():
    """float('nan') compares false with every bound: a range check written as `not value > 0` would pass it."""
    for kind in {id(k): k for _, _, k, _ in NUMERIC if isinstance(k, Number)}.values():
        assert not kind.contains(math.nan) and not kind.contains(math.inf) and not kind.contains(True)


# -- helpers for the file-based cases -------------------------------------------------------------

def one_error(argv, capsys, *needles, code=1):
    """Run a command in-process: exit ``code``, one error line 'vsgm CMD: ...' with the needles, no traceback."""
    assert main(argv) == code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith(f"vsgm {argv[0]}:")]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert "Traceback" not in err
    return lines[0]


def copy_model(model, where):
    where.mkdir(parents=True, exist_ok=True)
    for name in ("model.safetensors", "model.json"):
        shutil.copy(model.parent / name, where / name)
    return where / "model.safetensors"


def edit_json(path, change):
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


def files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def feature_table(n, seed=0, levels=4):
    rng = np.random.default_rng(seed)
    cols = {"index": np.arange(n)}
    for t in (0.1, 0.5):
        cols[f"loss_t{t:g}"] = rng.gamma(2.0, 1.0, n)
    for i in range(levels):
        cols[f"norm_{i}"] = rng.normal(i, 1.0 + i, n)
    return pd.DataFrame(cols)


# -- 9: malformed JSON and tables: one line naming the file, nothing written ----------------------

MODEL_JSON_EDITS = {
    "options a string": (lambda m: m.update(options="model_channels=16"), "'options' must be an object"),
    "options a list": (lambda m: m.update(options=[16]), "'options' must be an object"),
    "options null": (lambda m: m.update(options=None), "'options' must be an object"),
    "no size": (lambda m: m.pop("size"), "has no 'size' entry"),
    "size a string": (lambda m: m.update(size="8"), "'size' must be an integer"),
    "channel_mult a number": (lambda m: m["options"].update(channel_mult=2), "options.channel_mult must be like"),
    "sigma nan": (lambda m: m["options"].update(sigma=float("nan")), "not strict JSON"),
    "a list": (lambda m: (m.clear(), m.update(__list__=True)), "expected a JSON object"),
    # 5: edits that keep the weights loadable but change the network or its sampling
    "size edited": (lambda m: m.update(size=16), "size disagree(s) with the network recorded in"),
    "heads edited": (lambda m: m["options"].update(num_head_channels=8), "options.num_head_channels disagree"),
    "sigma edited": (lambda m: m["options"].update(sigma=50.0), "options.sigma disagree"),
}


@pytest.mark.parametrize("case", list(MODEL_JSON_EDITS))
def test_a_malformed_or_edited_model_json_is_refused(case, tiny_model, tmp_path, capsys):
    change, needle = MODEL_JSON_EDITS[case]
    model = copy_model(tiny_model, tmp_path / "m")
    sidecar = model.with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    change(meta)
    text = "[1, 2]" if meta.get("__list__") else json.dumps(meta)
    sidecar.write_text(text)
    line = one_error(["sample", "--checkpoint", str(model), "--num_steps", "1", "--num_samples", "1",
                      "--out", str(tmp_path / "out" / "s")], capsys, needle)
    assert "model.json" in line
    assert not (tmp_path / "out").exists()


def test_a_model_written_before_the_header_entry_loads_with_a_warning(tiny_model, tmp_path, caplog):
    """Older models have no network record in their header: model.json is trusted, and the log says so."""
    from safetensors.torch import load_file, save_file

    from vsgm.checkpoint import read_header
    from vsgm.models import load_trained

    model = copy_model(tiny_model, tmp_path / "m")
    assert read_header(model)["size"] == 8
    save_file(load_file(str(model)), str(model))  # the same weights, no metadata
    assert read_header(model) is None
    assert load_trained(model).size == 8
    assert "trusted as it is" in caplog.text


def test_malformed_json_and_tables_of_every_reader(tiny_model, digits_train, tmp_path, capsys):
    """The readers of vsgm's own files: resume, quality sidecar, nfe JSON, score and feature tables."""
    feats = tmp_path / "f.parquet"
    feature_table(80).to_parquet(feats)
    bad = tmp_path / "bad.parquet"
    out = tmp_path / "out"
    cases = [
        (feature_table(80).drop(columns="index"), "has no column(s) ['index']"),
        (feature_table(80).drop(columns=["loss_t0.1", "loss_t0.5"]), "needs loss_t* and norm_* columns"),
        (feature_table(80).assign(norm_9=1.0), "norm columns must be norm_0..norm_4"),
        (feature_table(80).assign(extra=1.0), "are not features of vsgm features"),
        (feature_table(80).assign(norm_1=np.nan), "non-finite value(s) in column(s) ['norm_1']"),
        (feature_table(80).assign(norm_1="x"), "are not numeric"),
        (feature_table(0), "has no rows"),
    ]
    for table, needle in cases:
        table.to_parquet(bad)
        for argv in (["--train_features", str(bad), "--features", str(feats)],
                     ["--train_features", str(feats), "--features", str(bad)]):
            one_error(["score", *argv, "--out", str(out / "s.parquet")], capsys, needle, "bad.parquet")
    bad.write_text("not parquet")
    one_error(["score", "--train_features", str(feats), "--features", str(bad), "--out", str(out / "s.parquet")],
              capsys, "not a readable Parquet table")
    # vsgm pair: a sanity table lacking a scorer, an nfe JSON without nfe
    scores = {n: pd.DataFrame({"index": np.arange(30), "loss": np.random.default_rng(i).normal(size=30),
                               "msma": np.random.default_rng(i + 9).normal(size=30)})
              for i, n in enumerate(("in", "out", "sanity"))}
    for n, df in scores.items():
        df.to_parquet(tmp_path / f"{n}.parquet")
    scores["sanity"].drop(columns="msma").to_parquet(tmp_path / "short.parquet")
    pair = ["pair", "--in_scores", str(tmp_path / "in.parquet"), "--out_scores", str(tmp_path / "out.parquet"),
            "--out", str(out / "p.csv"), "--n_boot", "10"]
    one_error([*pair, "--sanity", str(tmp_path / "short.parquet")], capsys, "short.parquet", "differ from")
    one_error(["pair", "--in_scores", str(tmp_path / "in.parquet"), "--out_scores", str(tmp_path / "in.parquet"),
               "--out", str(out / "p.csv")], capsys, "the outlier scores are the in-distribution scores themselves")
    for text, needle in [("{}", "has no 'nfe' entry"), ('{"nfe": [1]}', "'nfe' must be an object"),
                         ("{", "not valid JSON"), ('{"nfe": {"loss": NaN}}', "not strict JSON")]:
        (tmp_path / "nfe.json").write_text(text)
        one_error([*pair, "--nfe_json", str(tmp_path / "nfe.json")], capsys, "nfe.json", needle)
    assert not out.exists()
    # a resume file whose metadata lost its shape
    run = tmp_path / "run"
    from vsgm.checkpoint import save_resume

    save_resume(run / "resume.safetensors", {"model": {}}, {"options": "x", "step": 3, "history": [],
                                                            "world_size": 1})
    one_error(["train", "--data", str(digits_train), "--out_dir", str(run), "--n_epochs", "2", "--warmup", "1"],
              capsys, "resume.json", "'options' must be an object")
    assert files(run) == ["resume.json", "resume.safetensors"]


def test_an_unexpected_exception_is_one_line_and_debug_shows_it(tmp_path, monkeypatch, capsys):
    import vsgm.report

    def broken(*_):
        raise TypeError("simulated bug")

    monkeypatch.setattr(vsgm.report, "aggregate_results", broken)
    one_error(["aggregate", "--results", str(tmp_path), "--out_dir", str(tmp_path / "a")], capsys,
              "vsgm aggregate: internal error: TypeError: simulated bug", "--debug", "please report it")
    with pytest.raises(TypeError, match="simulated bug"):
        main(["--debug", "aggregate", "--results", str(tmp_path), "--out_dir", str(tmp_path / "a")])


# -- 1: a resume file refuses data and schedules it was not made from -----------------------------

@pytest.fixture(scope="module")
def digits_test(tmp_path_factory):
    from vsgm.data import prepare

    out = tmp_path_factory.mktemp("prepared") / "digits_test.safetensors"
    prepare("digits", "test", tmp_path_factory.mktemp("data"), out, size=8, channels=1)
    return out


def test_resume_onto_other_data_is_refused(digits_train, digits_test, tmp_path, tiny_options):
    from vsgm.train import Trainer, train

    trainer = Trainer(tiny_options, digits_train, tmp_path)
    trainer.train_step(*next(iter(trainer.loader)))
    trainer.save_resume()
    before = {p: (tmp_path / p).read_bytes() for p in files(tmp_path)}
    with pytest.raises(ValueError) as err:
        train(tiny_options, digits_test, tmp_path)
    message = str(err.value)
    assert "resume.safetensors: not resumed: it was made from other data or another schedule" in message
    assert "data_sha256" in message and "n_images" in message and "total_steps" in message
    assert "--restart" in message and "\n" not in message
    assert {p: (tmp_path / p).read_bytes() for p in files(tmp_path)} == before  # nothing written or replaced
    # the same data resumes; --restart (resume=False) starts over on the other data
    assert train(tiny_options, digits_test, tmp_path, resume=False)["step"] > 0


def test_resume_file_without_its_identity_is_refused(digits_train, tmp_path, tiny_options):
    """A resume file that does not say what it was made from cannot be trusted to continue."""
    from vsgm.checkpoint import save_resume
    from vsgm.train import train

    save_resume(tmp_path / "resume.safetensors", {"model": {}}, {"options": {**tiny_options, "size": 8},
                                                                  "step": 3, "history": [], "world_size": 1})
    with pytest.raises(ValueError, match=r"does not record the data and schedule .* --restart"):
        train(tiny_options, digits_train, tmp_path)
    assert not (tmp_path / "model.safetensors").exists()


# -- 2: sample quality from inputs that do not belong together ------------------------------------

@pytest.fixture(scope="module")
def classifier(digits_train, tmp_path_factory):
    from vsgm.data import load_prepared
    from vsgm.quality import save_classifier, train_classifier

    data = load_prepared(digits_train)
    model, acc = train_classifier(data.images, data.labels, epochs=1)
    out = tmp_path_factory.mktemp("clf") / "classifier.safetensors"
    save_classifier(model, out, {"train_accuracy": acc, "dataset": "digits", "size": 8})
    return out


def write_fake_samples(prefix, samples, dataset="digits"):
    np.savez(f"{prefix}.npz", samples=samples.astype(np.float32))
    write_json(f"{prefix}.json", {"sampler": "em", "dataset": dataset, "model": "digits"})
    return f"{prefix}.npz"


@pytest.mark.parametrize("shape, scale, dataset, needle", [
    ((16, 1, 16, 16), 1.0, "digits", "images of shape (channels, height, width) (1, 16, 16) vs (1, 8, 8)"),
    ((16, 1, 8, 8), 1.0, "photos", "dataset photos vs digits"),
    ((16, 1, 8, 8), 50.0, "digits", "not images in [-1, 1]"),
    ((16, 1, 8, 8), np.nan, "digits", "non-finite sample value(s)"),
])
def test_quality_refuses_samples_that_do_not_belong_to_the_reference(shape, scale, dataset, needle, classifier,
                                                                      digits_test, tmp_path, capsys):
    rng = np.random.default_rng(0)
    samples = rng.uniform(-1, 1, shape) * scale if scale == scale else np.full(shape, np.nan)
    npz = write_fake_samples(tmp_path / "s", samples, dataset)
    one_error(["quality", "--classifier", str(classifier), "--samples", npz, "--reference", str(digits_test),
               "--inception_weights", "none", "--out", str(tmp_path / "q.json")], capsys, needle)
    assert not (tmp_path / "q.json").exists()


def test_quality_of_matching_inputs_and_no_silent_overwrite(classifier, digits_test, tmp_path, capsys):
    npz = write_fake_samples(tmp_path / "s", np.random.default_rng(0).uniform(-1, 1, (16, 1, 8, 8)))
    argv = ["quality", "--classifier", str(classifier), "--samples", npz, "--reference", str(digits_test),
            "--inception_weights", "none", "--out", str(tmp_path / "q.json")]
    assert main(argv) == 0
    first = (tmp_path / "q.json").read_text()
    assert json.loads(first)["fd"] > 0
    one_error(argv, capsys, "q.json exists", "--overwrite")
    assert (tmp_path / "q.json").read_text() == first
    assert main([*argv, "--overwrite"]) == 0


def test_sweep_refuses_a_reference_of_another_size(tiny_model, classifier, digits_train, tmp_path, capsys):
    from vsgm.data import prepare

    ref16 = tmp_path / "ref16.safetensors"
    prepare("digits", "test", tmp_path / "data", ref16, size=16, channels=1)
    one_error(["sweep", "--checkpoint", str(tiny_model), "--classifier", str(classifier), "--reference", str(ref16),
               "--samplers", "em", "--steps", "2", "--num_samples", "4", "--out", str(tmp_path / "sw.csv")],
              capsys, "do not belong together", "(1, 8, 8) vs (1, 16, 16)")
    assert not (tmp_path / "sw.csv").exists()


# -- 3: feature columns matched by name --------------------------------------------------------------

def test_score_matches_feature_columns_by_name(tmp_path, capsys):
    """Reordered columns give the same scores; a table lacking or adding columns is refused."""
    train, target = feature_table(200, seed=1), feature_table(50, seed=2)
    train.to_parquet(tmp_path / "train.parquet")
    target.to_parquet(tmp_path / "target.parquet")
    target[list(reversed(target.columns))].to_parquet(tmp_path / "reversed.parquet")
    for name in ("target", "reversed"):
        assert main(["score", "--train_features", str(tmp_path / "train.parquet"), "--features",
                     str(tmp_path / f"{name}.parquet"), "--out", str(tmp_path / f"s_{name}.parquet")]) == 0
    a, b = (pd.read_parquet(tmp_path / f"s_{n}.parquet") for n in ("target", "reversed"))
    pd.testing.assert_frame_equal(a, b)
    target.drop(columns=["loss_t0.5"]).to_parquet(tmp_path / "lacking.parquet")
    one_error(["score", "--train_features", str(tmp_path / "train.parquet"), "--features",
               str(tmp_path / "lacking.parquet"), "--out", str(tmp_path / "x.parquet")], capsys,
              "lacking.parquet: its columns differ", "missing ['loss_t0.5']")
    one_error(["score", "--train_features", str(tmp_path / "train.parquet"), "--features",
               str(tmp_path / "target.parquet"), "--holdout", "--out", str(tmp_path / "x.parquet")], capsys,
              "--holdout scores the held-out part of --train_features")
    assert not (tmp_path / "x.parquet").exists()


# -- 4: non-finite samples and strict JSON ----------------------------------------------------------

def test_non_finite_samples_are_refused_before_anything_is_written(tiny_model, tmp_path, capsys):
    from vsgm.checkpoint import load_tensors, read_header, save_tensors

    tensors, meta = load_tensors(tiny_model)
    header = read_header(tiny_model)
    tensors = {k: v * 1e30 if v.is_floating_point() else v for k, v in tensors.items()}  # overflows float32
    meta = {k: v for k, v in meta.items() if k not in ("format", "versions")}
    save_tensors(tmp_path / "m" / "model.safetensors", tensors, meta, header=header)
    one_error(["sample", "--checkpoint", str(tmp_path / "m" / "model.safetensors"), "--num_steps", "2",
               "--num_samples", "3", "--out", str(tmp_path / "out" / "s")], capsys,
              "em gave", "non-finite value(s) in samples 0-2 of 3; nothing written")
    assert not (tmp_path / "out").exists()


def test_json_is_strict_and_a_non_finite_value_writes_nothing(tmp_path):
    with pytest.raises(ValueError, match=r"r\.json: not written: non-finite value\(s\) fd"):
        write_json(tmp_path / "r.json", {"fd": float("nan"), "n": 3})
    assert not list(tmp_path.iterdir())


# -- 6: an outlier set that is the model's own ------------------------------------------------------

def test_ood_against_the_models_own_dataset_is_refused(tiny_model, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    one_error(["ood", "--checkpoint", str(tiny_model), "--out_dataset", "digits"], capsys,
              "--out_dataset digits is the model's own dataset")
    assert not any(tmp_path.iterdir())


# -- 8: output paths checked before any work --------------------------------------------------------

def test_an_out_dir_that_is_a_file_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m").write_text("a file")
    one_error(["train", "--dataset", "digits", "--size", "8", "--out_dir", "m/run"], capsys,
              "m/run: cannot be an output directory, m is a file")
    one_error(["train", "--dataset", "digits", "--size", "8", "--out_dir", "x", "--n_epochs", "3", "--warmup", "3"],
              capsys, "warmup (3 epochs) must be below n_epochs (3)")
    assert files(tmp_path) == ["m"]  # nothing prepared, nothing trained


# -- issue 17: no command replaces what it did not make ---------------------------------------------

def test_sample_writes_beside_the_user_and_never_over_an_existing_result(tiny_model, tmp_path, monkeypatch,
                                                                          capsys):
    monkeypatch.chdir(tmp_path)
    model_dir = tiny_model.parent
    before = files(model_dir)
    argv = ["sample", "--checkpoint", str(tiny_model), "--num_steps", "2", "--num_samples", "2"]
    assert main(argv) == 0
    assert files(model_dir) == before  # nothing in the model's (the workflow's results) directory
    written = files(tmp_path)
    assert written == [f"samples/{model_dir.name}/em.{e}" for e in ("json", "npz", "png")]
    grid = (tmp_path / written[2]).read_bytes()
    one_error([*argv, "--seed", "1"], capsys, f"samples/{model_dir.name}/em.png exists", "--overwrite")
    assert (tmp_path / written[2]).read_bytes() == grid
    assert main([*argv, "--seed", "1", "--overwrite"]) == 0
    assert (tmp_path / written[2]).read_bytes() != grid


def test_every_writing_command_refuses_an_existing_output(tiny_model, digits_train, tmp_path, capsys):
    """One existing output per command: refused before any work, left as it was."""
    feature_table(100).to_parquet(tmp_path / "f.parquet")
    for n in ("in", "out"):
        pd.DataFrame({"index": np.arange(20), "loss": np.random.default_rng(len(n)).normal(size=20)}).to_parquet(
            tmp_path / f"{n}.parquet")
    existing = tmp_path / "existing"
    existing.write_text("someone's result")
    commands = [
        ["features", "--checkpoint", str(tiny_model), "--data", str(digits_train), "--out", str(existing)],
        ["score", "--train_features", str(tmp_path / "f.parquet"), "--features", str(tmp_path / "f.parquet"),
         "--out", str(existing)],
        ["pair", "--in_scores", str(tmp_path / "in.parquet"), "--out_scores", str(tmp_path / "out.parquet"),
         "--out", str(existing)],
        ["classifier", "--data", str(digits_train), "--out", str(existing)],
        ["prepare", "--dataset", "digits", "--split", "test", "--size", "8", "--channels", "1", "--root",
         str(tmp_path / "data"), "--out", str(existing)],
        ["bench", "--out", str(existing)],
    ]
    for argv in commands:
        try:
            assert main(argv) == 1, argv[0]
            err = capsys.readouterr().err
        except SystemExit as exit_info:  # the data commands exit with their one-line message
            err = str(exit_info.code)
        assert "existing exists" in err and "--overwrite" in err, (argv[0], err)
        assert existing.read_text() == "someone's result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing", "f.parquet", "in.parquet", "out.parquet"]

