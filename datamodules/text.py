"""IMDB movie reviews (Maas et al. 2011) as padded sequences of word ids, for text classifiers (model=lstm).

Reads the official archive's layout, `<data_dir>/aclImdb/{train,test}/{neg,pos}/*.txt` (25k reviews per
split, label 0 = neg, 1 = pos; `train/unsup` is ignored), downloading and extracting it when missing. The
vocabulary comes from the training split only, so no test word leaks into the model's inputs."""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

import torch
from torch.utils.data import TensorDataset
from torchvision.datasets.utils import download_and_extract_archive

from datamodules.base import DatasetNotFoundError, KDDataModule
from errors import ConfigError

PAD, UNK = 0, 1
SPECIAL_TOKENS = ("<pad>", "<unk>")  # ids 0 and 1; the vocabulary's words follow from id 2
# Bump when tokenize() changes: it is part of the cache key, so old caches are not read back.
TOKENIZER_VERSION = 1

_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
# Letters and digits (any script), keeping inner apostrophes ("don't"); punctuation is dropped.
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


def tokenize(text: str) -> list[str]:
    """Lowercase words of one review; the `<br />` tags the IMDB files use for line breaks become spaces."""
    return _WORD.findall(_BREAK.sub(" ", text.lower()))


def build_vocabulary(token_lists: Iterable[Sequence[str]], vocab_size: int, min_freq: int = 1) -> list[str]:
    """The `vocab_size` most frequent words seen at least `min_freq` times; ties broken alphabetically so the
    vocabulary (and every id) is the same on every machine."""
    counts = Counter(token for tokens in token_lists for token in tokens)
    frequent = [(word, n) for word, n in counts.items() if n >= min_freq]
    frequent.sort(key=lambda item: (-item[1], item[0]))
    return [word for word, _ in frequent[:vocab_size]]


def encode(token_lists: Sequence[Sequence[str]], vocabulary: Sequence[str], max_length: int) -> torch.Tensor:
    """(N, max_length) int64 ids: words outside the vocabulary -> <unk>; the first `max_length` tokens are
    kept and shorter reviews are padded on the right with <pad>, which the LSTM skips (packed sequences)."""
    ids = {word: i + len(SPECIAL_TOKENS) for i, word in enumerate(vocabulary)}
    out = torch.full((len(token_lists), max_length), PAD, dtype=torch.int64)
    for row, tokens in enumerate(token_lists):
        kept = [ids.get(token, UNK) for token in tokens[:max_length]]
        if kept:
            out[row, : len(kept)] = torch.as_tensor(kept, dtype=torch.int64)
    return out


class IMDBDataModule(KDDataModule):
    """Binary sentiment of IMDB reviews; x = (max_length,) int64 word ids, y = 0 (neg) / 1 (pos).

    The tokenised tensors are cached in `<data_dir>/aclImdb/kd_cache/`, keyed by the vocabulary settings and
    the tokenizer version, so only the first run reads and tokenises the 50k files."""

    true_name = "imdb"
    true_num_classes = 2
    url = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
    md5 = "7c2ac02c03563afcf9b574c7e56c153a"
    folder_name = "aclImdb"
    splits = ("train", "test")
    labels = ("neg", "pos")  # class index = position

    def __init__(self, *args, vocab_size: int = 20000, min_freq: int = 1, max_length: int = 100,
                 download: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for key, value in (("vocab_size", vocab_size), ("min_freq", min_freq), ("max_length", max_length)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"data.{key} must be an integer >= 1, got {value!r}")
        if self.input_shape != (max_length,):
            raise ConfigError(f"data.input_shape={list(self.input_shape)} does not match data.max_length="
                              f"{max_length}; imdb inputs are [max_length] word ids: remove the input_shape "
                              f"override and set data.max_length instead")
        self.vocab_size, self.min_freq, self.max_length = vocab_size, min_freq, max_length
        self.download = bool(download)
        self.vocabulary: list[str] | None = None
        self._tensors: dict[str, torch.Tensor] | None = None

    # -- files ---------------------------------------------------------------------------------------
    @property
    def folder(self) -> Path:
        return Path(self.data_dir) / self.folder_name

    def _missing_folders(self) -> list[str]:
        return [f"{split}/{label}" for split in self.splits for label in self.labels
                if not (self.folder / split / label).is_dir()]

    def _review_files(self, split: str) -> list[tuple[Path, int]]:
        """(file, label) pairs of one split, neg then pos, each sorted by name: a fixed order, so example
        indices (and the val split drawn from them) are the same on every machine."""
        files = []
        for label, name in enumerate(self.labels):
            folder = self.folder / split / name
            files += [(folder / entry, label) for entry in sorted(os.listdir(folder)) if entry.endswith(".txt")]
        if not files:
            raise DatasetNotFoundError(f"{self.folder / split} holds no reviews (*.txt under neg/ and pos/); "
                                       f"extract {self.url} again into {self.data_dir}/")
        return files

    def prepare_data(self) -> None:
        """Downloads only when folders are missing; offline, fails with what to fetch and where to put it."""
        if not self._missing_folders():
            return
        failure = "downloading is off (data.download=false)"
        if self.download:
            try:
                download_and_extract_archive(self.url, download_root=self.data_dir, md5=self.md5,
                                             remove_finished=True)
            except Exception as error:  # noqa: BLE001 - offline shows up as URLError, OSError, timeouts, ...
                failure = f"it could not be downloaded ({type(error).__name__}: {error})"
            if not self._missing_folders():
                return
        raise DatasetNotFoundError(
            f"IMDB reviews not found under {self.folder} (missing: {', '.join(self._missing_folders())}) and "
            f"{failure}. Download {self.url} on a machine with internet and extract it into {self.data_dir}/ "
            f"(so that {self.folder / 'train' / 'pos'}/ holds the .txt reviews), or set data.data_dir=PATH "
            f"(or KD_DATA_DIR) to the folder that holds {self.folder_name}/.")

    # -- tokenised tensors, cached ----------------------------------------------------------------------
    def cache_path(self) -> Path:
        """Keyed by everything that changes the tensors, and by the number of review files per split, so a
        re-extracted or edited dataset of another size is tokenised afresh."""
        sizes = {split: len(self._review_files(split)) for split in self.splits}
        key = {"vocab_size": self.vocab_size, "min_freq": self.min_freq, "max_length": self.max_length,
               "tokenizer": TOKENIZER_VERSION, "files": sizes}
        digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
        return (self.folder / "kd_cache" /
                f"tokens_v{self.vocab_size}_f{self.min_freq}_len{self.max_length}_{digest}.pt")

    def _tokenise(self) -> dict:
        tokens, labels = {}, {}
        for split in self.splits:
            files = self._review_files(split)
            tokens[split] = [tokenize(path.read_text(encoding="utf-8", errors="replace")) for path, _ in files]
            labels[split] = torch.as_tensor([label for _, label in files], dtype=torch.int64)
        vocabulary = build_vocabulary(tokens["train"], self.vocab_size, self.min_freq)  # training split only
        return {"vocabulary": vocabulary,
                **{f"x_{split}": encode(tokens[split], vocabulary, self.max_length) for split in self.splits},
                **{f"y_{split}": labels[split] for split in self.splits}}

    def _load_or_tokenise(self) -> dict:
        if self._tensors is not None:
            return self._tensors
        path = self.cache_path()
        if path.is_file():
            cached = torch.load(path, map_location="cpu", weights_only=True)
        else:
            cached = self._tokenise()
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                # Write then rename, so a concurrent run never reads a half-written file.
                with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as handle:
                    torch.save(cached, handle)
                os.replace(handle.name, path)
            except OSError:
                pass  # a read-only data folder only costs tokenising again next time
        self.vocabulary = list(cached["vocabulary"])
        self._tensors = cached
        return cached

    def load_train(self):
        tensors = self._load_or_tokenise()
        return TensorDataset(tensors["x_train"], tensors["y_train"])

    def load_test(self):
        tensors = self._load_or_tokenise()
        return TensorDataset(tensors["x_test"], tensors["y_test"])
