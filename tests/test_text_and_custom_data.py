"""Text and custom data: IMDB (made-up reviews in the exact aclImdb layout) and the bidirectional LSTM, your
own image folders, CSV files; and each through the real entry functions (train, then distill for text)."""
from __future__ import annotations

import csv
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from datamodules import DatasetNotFoundError
from datamodules.text import IMDBDataModule, tokenize
from errors import ConfigError, UserError
from models import build_model, feature_spec
from models.features import FeatureTaps
from runs.training import instantiate, run_distill, run_train
from tests.helpers import CFG_DIR, compose_config

POSITIVE = ["great", "wonderful", "brilliant", "loved", "moving", "superb"]
NEGATIVE = ["awful", "boring", "terrible", "hated", "dull", "waste"]
FILLER = ["the", "film", "movie", "acting", "story", "plot", "was", "and", "it", "i"]
TEST_ONLY_WORD = "zeppelin"  # appears only in test reviews: must map to <unk>
# Few steps of one epoch, on CPU, without loggers or progress bars.
QUICK = ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.accelerator=cpu",
         "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1", "~logger"]


# -- made-up data in the real layouts ------------------------------------------------------------------
def write_fake_imdb(root: Path, n_train: int = 12, n_test: int = 4, seed: int = 0) -> dict:
    """Reviews under root/aclImdb/{train,test}/{neg,pos}/<id>_<rating>.txt, as in the official archive
    (with its `<br />` line breaks and a train/unsup folder that must be ignored). Returns the texts."""
    rng = random.Random(seed)
    texts = {}
    for split, count in (("train", n_train), ("test", n_test)):
        for label, words in (("neg", NEGATIVE), ("pos", POSITIVE)):
            folder = root / "aclImdb" / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                body = [rng.choice(words if rng.random() < 0.5 else FILLER) for _ in range(rng.randint(5, 20))]
                if split == "test" and i == 0:
                    body.insert(1, TEST_ONLY_WORD.capitalize())
                text = " ".join(body[:3]) + ".<br /><br />" + " ".join(body[3:]).capitalize() + "!"
                (folder / f"{i}_{rng.randint(7, 10) if label == 'pos' else rng.randint(1, 4)}.txt").write_text(text)
                texts[split, label, i] = text
    unsup = root / "aclImdb" / "train" / "unsup"
    unsup.mkdir(parents=True, exist_ok=True)
    (unsup / "0_0.txt").write_text("unlabelled review " + TEST_ONLY_WORD)
    return texts


def write_image_folder(root: Path, counts: dict[str, dict[str, int]], size: int = 40, seed: int = 0) -> None:
    """root/<split>/<class>/<i>.png, RGB noise with a class-dependent tint."""
    rng = np.random.default_rng(seed)
    for split, classes in counts.items():
        for c, (name, count) in enumerate(classes.items()):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = rng.integers(0, 128, size=(size, size, 3), dtype=np.uint8)
                pixels[..., c % 3] += 100
                Image.fromarray(pixels).save(folder / f"{i}.png")


def write_csv(path: Path, rows: list[dict], columns: list[str]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def iris_like(n: int, seed: int = 0) -> list[dict]:
    """Three string-labelled classes with separated means; an id column that is not a feature."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        species = ["setosa", "versicolor", "virginica"][i % 3]
        centre = {"setosa": 0.0, "versicolor": 3.0, "virginica": 6.0}[species]
        rows.append({"id": f"row{i}", "sepal": round(centre + rng.normal(), 3),
                     "petal": round(10 * centre + 5 * rng.normal(), 3), "species": species})
    return rows


def data_from_config(config_name: str, data_dir: Path, **overrides):
    node = OmegaConf.merge(OmegaConf.load(f"{CFG_DIR}/data/{config_name}.yaml"), overrides)
    cfg = OmegaConf.create({"paths": {"data_dir": str(data_dir)}, "seed": 0, "data": node})
    return instantiate(cfg.data)


def tiny_imdb(data_dir: Path, **overrides):
    settings = {"max_length": 12, "vocab_size": 40, "min_freq": 1, "val_size": 4, "batch_size": 8, **overrides}
    return data_from_config("imdb", data_dir, **settings)


@pytest.fixture(scope="module")
def imdb_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("imdb")
    write_fake_imdb(root)
    return root


# -- IMDB ------------------------------------------------------------------------------------------------
def test_tokenize_lowercases_and_strips_line_breaks():
    assert tokenize("Great film!<br /><br />Don't MISS it, 10/10.") == \
        ["great", "film", "don't", "miss", "it", "10", "10"]
    assert tokenize("one<br/>two<BR />three") == ["one", "two", "three"]


def test_imdb_vocabulary_from_train_only_padding_and_truncation(tmp_path):
    texts = write_fake_imdb(tmp_path)
    dm = tiny_imdb(tmp_path)
    assert (dm.name, dm.num_classes, dm.input_shape) == ("imdb", 2, (12,))
    dm.setup("fit")
    x_train, y_train = dm.train_set.base.tensors
    x_test, y_test = dm.test_set.base.tensors
    assert x_train.shape == (24, 12) and x_test.shape == (8, 12) and x_train.dtype == torch.int64
    # neg files first, then pos; train/unsup ignored.
    assert y_train.tolist() == [0] * 12 + [1] * 12 and y_test.tolist() == [0] * 4 + [1] * 4
    # The vocabulary: training words only, most frequent first, capped; the test-only word is <unk>.
    train_words = [w for (split, _, _), text in texts.items() if split == "train" for w in tokenize(text)]
    assert TEST_ONLY_WORD not in dm.vocabulary and set(dm.vocabulary) <= set(train_words)
    counts = [train_words.count(w) for w in dm.vocabulary]
    assert counts == sorted(counts, reverse=True) and len(dm.vocabulary) <= 40
    ids = {w: i + 2 for i, w in enumerate(dm.vocabulary)}
    for row, key in ((x_test[0], ("test", "neg", 0)), (x_train[12], ("train", "pos", 0))):
        tokens = tokenize(texts[key])
        expected = [ids.get(t, 1) for t in tokens[:12]] + [0] * max(0, 12 - len(tokens))  # truncated or padded
        assert row.tolist() == expected
    assert x_test[0, 1] == 1  # "Zeppelin" -> <unk>
    lengths = (x_train != 0).sum(1)
    assert lengths.max() == 12 and lengths.min() < 12  # some reviews truncated, some padded
    # Pads only trail: the model's lengths rely on it.
    assert all((row[n:] == 0).all() and (row[:n] != 0).all() for row, n in zip(x_train, lengths))
    # Batches are (x, y, index) with the base class's val split (val items come from the training files).
    assert len(dm.train_set) == 20 and len(dm.val_set) == 4 and not set(dm.train_indices) & set(dm.val_indices)
    x, y, index = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 12) and x.dtype == torch.int64 and torch.equal(x, x_train[index])
    assert torch.equal(y, y_train[index])


def test_imdb_min_freq_and_vocab_size_cap(tmp_path):
    write_fake_imdb(tmp_path)
    capped = tiny_imdb(tmp_path, vocab_size=3)
    capped.setup("fit")
    assert len(capped.vocabulary) == 3 and int(capped.train_set.base.tensors[0].max()) <= 3 + 1
    frequent = tiny_imdb(tmp_path, min_freq=1000)
    frequent.setup("fit")
    x = frequent.train_set.base.tensors[0]
    assert frequent.vocabulary == [] and set(x.unique().tolist()) <= {0, 1}  # every word <unk>


def test_imdb_tokenised_tensors_are_cached(tmp_path, monkeypatch):
    write_fake_imdb(tmp_path)
    first = tiny_imdb(tmp_path)
    first.setup("fit")
    assert first.cache_path().is_file() and first.cache_path().parent == tmp_path / "aclImdb" / "kd_cache"

    def retokenise(*args, **kwargs):
        raise AssertionError("tokenised again despite the cache")
    monkeypatch.setattr("datamodules.text.tokenize", retokenise)
    again = tiny_imdb(tmp_path)
    again.setup("fit")
    assert again.vocabulary == first.vocabulary
    for a, b in zip((*first.train_set.base.tensors, *first.test_set.base.tensors),
                    (*again.train_set.base.tensors, *again.test_set.base.tensors)):
        assert torch.equal(a, b)
    # Other vocabulary settings are other tensors: another cache file.
    paths = {tiny_imdb(tmp_path, **change).cache_path() for change in
             ({}, {"vocab_size": 30}, {"min_freq": 2}, {"max_length": 10})}
    assert len(paths) == 4


def test_imdb_missing_offline_names_the_fix(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network unreachable")
    monkeypatch.setattr("datamodules.text.download_and_extract_archive", offline)
    dm = tiny_imdb(tmp_path)
    with pytest.raises(DatasetNotFoundError) as caught:
        dm.setup("fit")
    message = str(caught.value)
    assert f"IMDB reviews not found under {tmp_path / 'aclImdb'}" in message
    assert "missing: train/neg, train/pos, test/neg, test/pos" in message
    assert "could not be downloaded (OSError: network unreachable)" in message
    assert "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz" in message
    assert f"extract it into {tmp_path}/" in message and "data.data_dir=PATH" in message
    with pytest.raises(DatasetNotFoundError, match=r"missing: test/neg.*downloading is off \(data.download=false\)"):
        (tmp_path / "aclImdb" / "train" / "neg").mkdir(parents=True)
        (tmp_path / "aclImdb" / "train" / "pos").mkdir()
        tiny_imdb(tmp_path, download=False).prepare_data()


def test_imdb_refuses_contradicting_settings(tmp_path):
    with pytest.raises(ConfigError, match=r"data.input_shape=\[20\] does not match data.max_length=12"):
        tiny_imdb(tmp_path, input_shape=[20])
    with pytest.raises(ConfigError, match="data.num_classes=3 does not match imdb"):
        tiny_imdb(tmp_path, num_classes=3)
    with pytest.raises(ConfigError, match="data.vocab_size must be an integer >= 1"):
        tiny_imdb(tmp_path, vocab_size=0)


# -- LSTM ------------------------------------------------------------------------------------------------
def test_lstm_shapes_taps_and_parameters():
    torch.manual_seed(0)
    model = build_model("lstm", 2, (30,), vocab_size=50).eval()
    spec = feature_spec(model)
    assert spec.stages == ("encoder",) and spec.embedding == "classifier:input"
    x = torch.randint(2, 52, (3, 30))
    x[0, 10:] = 0
    taps = FeatureTaps(model, ["stage:0", "embedding"])
    logits = model(x)
    features = taps.pop()
    assert logits.shape == (3, 2) and features["stage:0"].shape == features["embedding"].shape == (3, 200)
    torch.testing.assert_close(model.classifier(features["embedding"]), logits)
    # The paper's sizes: 128-d embeddings (pad row zero), 100 cells per direction.
    assert model.embedding.weight.shape == (52, 128) and float(model.embedding.weight[0].detach().abs().sum()) == 0
    lstm_params = 2 * (4 * 100 * (128 + 100) + 2 * 4 * 100)
    assert sum(p.numel() for p in model.parameters()) == 52 * 128 + lstm_params + 200 * 2 + 2
    assert build_model("lstm", 2, (30,), vocab_size=50).train()(x).shape == (3, 2)


def test_lstm_prediction_ignores_padding():
    torch.manual_seed(0)
    model = build_model("lstm", 2, (40,), vocab_size=50, hidden_size=16).eval()
    review = torch.randint(2, 52, (9,))
    other = torch.randint(2, 52, (25,))
    short, long = torch.zeros(2, 12, dtype=torch.int64), torch.zeros(2, 40, dtype=torch.int64)
    short[0, :9] = long[0, :9] = review
    long[1, :25] = other  # batched with a longer review, too
    short[1, :12] = other[:12]
    with torch.no_grad():
        logits_short, logits_long = model(short), model(long)
        alone = model(review.unsqueeze(0))
    torch.testing.assert_close(logits_short[0], logits_long[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(alone[0], logits_long[0], rtol=1e-5, atol=1e-6)
    # ...whereas the words do change it.
    changed = long.clone()
    changed[0, 3] = (changed[0, 3] + 1 - 2) % 50 + 2
    assert not torch.allclose(model(changed)[0], logits_long[0])
    # An empty review (all pads) still gives finite logits.
    assert torch.isfinite(model(torch.zeros(1, 40, dtype=torch.int64))).all()


def test_lstm_refuses_non_text_data():
    cfg = compose_config("train", ["data=mnist1d", "model=lstm"])
    with pytest.raises(ConfigError, match="model lstm needs a vocabulary size.*data=imdb"):
        instantiate(cfg.model)
    with pytest.raises(ConfigError, match=r"input_shape \[max_length\].*\[3, 32, 32\]"):
        build_model("lstm", 10, (3, 32, 32))
    with pytest.raises(ConfigError, match="lstm reads word ids"):
        build_model("lstm", 2, (5,), vocab_size=10)(torch.randn(2, 5))


# -- image folders ---------------------------------------------------------------------------------------
def test_image_folder_reads_classes_and_applies_the_recipe(tmp_path):
    write_image_folder(tmp_path, {"train": {"cat": 6, "dog": 6, "eel": 4}, "val": {"dog": 3, "cat": 2}})
    dm = data_from_config("image_folder", tmp_path, root=str(tmp_path), image_size=32, val_size=2, num_workers=0)
    assert dm.classes == ["cat", "dog", "eel"] and dm.num_classes == 3 and dm.input_shape == (3, 32, 32)
    assert dm.resize_size == 37  # 32 / 0.875
    dm.setup("fit")
    assert len(dm.train_set) == 14 and len(dm.val_set) == 2 and len(dm.test_set) == 5
    # Test labels follow train/'s class order even though val/ lacks a class.
    assert sorted(int(dm.test_set[i][1]) for i in range(5)) == [0, 0, 1, 1, 1]
    x, y, index = next(iter(dm.train_dataloader()))
    assert x.shape[1:] == (3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    names = [t.__class__.__name__ for t in dm.train_transform.transforms]
    assert names == ["RandomResizedCrop", "RandomHorizontalFlip", "ToTensor", "Normalize"]
    assert [t.__class__.__name__ for t in dm.eval_transform.transforms] == \
        ["Resize", "CenterCrop", "ToTensor", "Normalize"]
    assert tuple(dm.eval_transform.transforms[-1].mean) == (0.485, 0.456, 0.406)
    # Evaluation is deterministic.
    assert torch.equal(dm.test_set[0][0], dm.test_set[0][0])
    default = data_from_config("image_folder", tmp_path, root=str(tmp_path))
    assert default.input_shape == (3, 224, 224) and default.resize_size == 256


def test_image_folder_bad_input(tmp_path):
    with pytest.raises(ConfigError, match="needs data.root=PATH"):
        data_from_config("image_folder", tmp_path)
    with pytest.raises(DatasetNotFoundError, match=r"data.root=.*nowhere does not exist"):
        data_from_config("image_folder", tmp_path, root=str(tmp_path / "nowhere"))
    write_image_folder(tmp_path, {"train": {"cat": 2, "dog": 2}})
    with pytest.raises(DatasetNotFoundError, match=r"lacks .*val.*needs train/<class>/ and val/ \(or test/\)"):
        data_from_config("image_folder", tmp_path, root=str(tmp_path))
    write_image_folder(tmp_path, {"test": {"cat": 1, "dog": 1}})
    assert data_from_config("image_folder", tmp_path, root=str(tmp_path)).test_folder == tmp_path / "test"
    with pytest.raises(ConfigError, match=r"data.num_classes=10 but .*train has 2 class folders"):
        data_from_config("image_folder", tmp_path, root=str(tmp_path), num_classes=10)
    write_image_folder(tmp_path, {"test": {"yak": 1}})
    with pytest.raises(ConfigError, match=r"classes that .*train lacks: \['yak'\]"):
        data_from_config("image_folder", tmp_path, root=str(tmp_path))


# -- CSV ---------------------------------------------------------------------------------------------------
def test_csv_standardises_with_training_statistics(tmp_path):
    path = write_csv(tmp_path / "iris.csv", iris_like(60), ["id", "sepal", "petal", "species"])
    dm = data_from_config("csv", tmp_path, path=str(path), label="species", ignore=["id"], val_size=6)
    assert dm.classes == ["setosa", "versicolor", "virginica"]
    assert dm.num_classes == 3 and dm.input_shape == (2,) and dm.feature_names == ["sepal", "petal"]
    dm.setup("fit")
    assert len(dm.test_set) == 12 and len(dm.train_set) == 42 and len(dm.val_set) == 6
    x_all, y_all = dm.train_set.base.tensors
    fit = x_all[dm.train_indices]
    torch.testing.assert_close(fit.mean(0), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(fit.std(0, unbiased=False), torch.ones(2), atol=1e-5, rtol=0)
    # Test rows use the training rows' statistics (not their own), mapped back to the raw file values.
    rows = {(r["sepal"], r["species"]) for r in iris_like(60)}
    x_test, y_test = dm.test_set.base.tensors
    raw = x_test.numpy() * dm.std + dm.mean
    assert all((round(float(s), 3), dm.classes[int(c)]) in rows for s, c in zip(raw[:, 0], y_test))
    x, y, index = next(iter(dm.train_dataloader()))
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and torch.equal(y, y_all[index])
    # The test split is seeded by split_seed.
    other = data_from_config("csv", tmp_path, path=str(path), label="species", ignore=["id"], split_seed=1)
    other.setup("fit")
    assert not torch.equal(other.test_set.base.tensors[1], y_test) or \
        not torch.equal(other.test_set.base.tensors[0], x_test)


def test_csv_separate_test_file_and_numeric_labels(tmp_path):
    columns = ["a", "b", "target"]
    train = write_csv(tmp_path / "train.csv", [{"a": i, "b": i % 5, "target": i % 3 * 2} for i in range(30)],
                      columns)
    test = write_csv(tmp_path / "test.csv", [{"target": 4, "b": 1, "a": 100}, {"target": 0, "b": 2, "a": -1}],
                     ["target", "b", "a"])
    dm = data_from_config("csv", tmp_path, path=str(train), label="target", test_path=str(test), val_size=0)
    assert dm.classes == ["0", "2", "4"]  # numeric order; labels map to class indices 0, 1, 2
    dm.setup("fit")
    x_test, y_test = dm.test_set.base.tensors
    assert y_test.tolist() == [2, 0] and len(dm.train_set) == 30 and dm.val_set is dm.test_set
    torch.testing.assert_close(x_test[0], torch.tensor([(100 - 14.5) / np.std(np.arange(30)), (1 - 2) / np.sqrt(2)],
                                                       dtype=torch.float32))


def test_csv_bad_input_names_the_column_and_the_fix(tmp_path):
    path = write_csv(tmp_path / "iris.csv", iris_like(30), ["id", "sepal", "petal", "species"])
    with pytest.raises(ConfigError, match=r"data=csv needs data.path=PATH .* and data.label=COLUMN"):
        data_from_config("csv", tmp_path, path=str(path))
    with pytest.raises(ConfigError, match=r"label column 'kind' is not in .*columns: id, sepal, petal, species.*"
                                          r"set data.label"):
        data_from_config("csv", tmp_path, path=str(path), label="kind")
    with pytest.raises(ConfigError, match=r"feature column 'id' .* holds 'row0', not a finite number .*"
                                          r"data.ignore=\[id\]"):
        data_from_config("csv", tmp_path, path=str(path), label="species")
    with pytest.raises(ConfigError, match=r"data.num_classes=2 but column 'species' .* has 3 classes"):
        data_from_config("csv", tmp_path, path=str(path), label="species", ignore=["id"], num_classes=2)
    with pytest.raises(ConfigError, match=r"columns \['petl'\] .* are not in"):
        data_from_config("csv", tmp_path, path=str(path), label="species", ignore=["id", "petl"])
    with pytest.raises(DatasetNotFoundError, match="CSV file .*missing.csv does not exist"):
        data_from_config("csv", tmp_path, path=str(tmp_path / "missing.csv"), label="species")
    test = write_csv(tmp_path / "test.csv", [{"sepal": 1, "petal": 2, "species": "rose"}],
                     ["sepal", "petal", "species"])
    with pytest.raises(ConfigError, match=r"labels \['rose'\] in .*test.csv never occur in the training file"):
        data_from_config("csv", tmp_path, path=str(path), label="species", ignore=["id"], test_path=str(test))
    gap = write_csv(tmp_path / "gap.csv", [{"x": 1, "y": "a"}, {"x": "", "y": "b"}], ["x", "y"])
    with pytest.raises(ConfigError, match=r"feature column 'x' .* is empty \(data row 2\)"):
        data_from_config("csv", tmp_path, path=str(gap), label="y")


# -- end to end through the real entry functions ---------------------------------------------------------
def test_lstm_teacher_then_distilled_lstm_student(imdb_dir, tmp_path):
    data = ["data=imdb", f"paths.data_dir={imdb_dir}", f"paths.output_dir={tmp_path}", "data.max_length=16",
            "data.vocab_size=60", "data.min_freq=1", "data.val_size=4", "data.batch_size=8", *QUICK]
    teacher = run_train(compose_config("train", [*data, "model=lstm"]), quiet=True)
    assert teacher["config"]["model"]["vocab_size"] == 60 and teacher["config"]["data"]["input_shape"] == [16]
    assert 0.0 <= teacher["last"]["test/top1"] <= 1.0
    checkpoint = teacher["checkpoints"]["last"]
    # A smaller student, by logits (kd) and by the embedding tap (rkd, pkt).
    for method in ("kd", "rkd", "pkt"):
        cfg = compose_config("distill", [*data, "~experiment", f"kd={method}", "student=lstm", "teacher/model=lstm",
                                         f"teacher.checkpoint={checkpoint}", "student.hidden_size=16",
                                         "student.embedding_dim=32"])
        record = run_distill(cfg, quiet=True)
        assert record["teacher_model"] == "lstm" and record["config"]["student"]["hidden_size"] == 16
        assert 0.0 <= record["last"]["test/top1"] <= 1.0 and record["last"]["test/kl"] >= 0
        assert 0.0 <= record["last"]["test/agreement"] <= 1.0
    # The fidelity paper's setting: an ensemble of LSTMs (trained here, seeds s and s+1) -> an LSTM student.
    cfg = compose_config("distill", [*data, "~experiment", "kd=kd", "student=lstm", "teacher=ensemble",
                                     "teacher.size=2", "teacher/model=lstm", "student.hidden_size=16"])
    record = run_distill(cfg, quiet=True)
    assert record["teacher_kind"] == "ensemble" and record["teacher_model"] == "lstm"
    assert len(record["teacher_checkpoint"]) == 2 and 0.0 <= record["last"]["test/agreement"] <= 1.0


def test_mlp_on_a_csv_file(tmp_path):
    path = write_csv(tmp_path / "iris.csv", iris_like(60), ["id", "sepal", "petal", "species"])
    cfg = compose_config("train", ["data=csv", f"data.path={path}", "data.label=species", "data.ignore=[id]",
                                   "data.batch_size=8", "model=mlp", f"paths.output_dir={tmp_path}", *QUICK])
    assert cfg.data.num_classes is None  # read from the file, then handed to the model
    record = run_train(cfg, quiet=True)
    assert record["config"]["data"]["num_classes"] == 3 and record["config"]["model"]["input_shape"] == [2]
    assert 0.0 <= record["last"]["test/top1"] <= 1.0


def test_cnn_on_an_image_folder(tmp_path):
    write_image_folder(tmp_path / "images", {"train": {"cat": 8, "dog": 8}, "val": {"cat": 2, "dog": 2}})
    cfg = compose_config("train", ["data=image_folder", f"data.root={tmp_path / 'images'}", "data.image_size=32",
                                   "data.num_workers=0", "data.batch_size=4", "data.val_size=4", "model=lenet",
                                   f"paths.output_dir={tmp_path / 'out'}", *QUICK])
    record = run_train(cfg, quiet=True)
    assert record["config"]["model"]["num_classes"] == 2 and record["config"]["model"]["input_shape"] == [3, 32, 32]
    assert 0.0 <= record["last"]["test/top1"] <= 1.0


def test_entry_points_stop_on_bad_custom_data(tmp_path):
    cfg = compose_config("train", ["data=image_folder", "model=lenet", f"paths.output_dir={tmp_path}", *QUICK])
    with pytest.raises(UserError, match="needs data.root=PATH"):
        run_train(cfg, quiet=True)
    cfg = compose_config("train", ["data=mnist1d", "model=lstm", f"paths.data_dir={tmp_path}",
                                   f"paths.output_dir={tmp_path}", *QUICK])
    with pytest.raises(UserError, match="model lstm needs a vocabulary size"):
        run_train(cfg, quiet=True)
