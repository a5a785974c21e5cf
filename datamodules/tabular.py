"""Tabular data from a CSV file with a header row: numeric feature columns and one label column.

Read with the standard library's csv module (no pandas dependency). Features are standardised with the
mean and standard deviation of the training rows only (the val split and test rows never inform them);
labels may be any strings and map to class indices in sorted order (numerically when every label is a
number). The test set is a separate file (`test_path`) or a seeded split of the one file (`test_size`).
`num_classes` and `input_shape` ([number of features]) are read from the data, so the config may leave
them null; a value it does give must agree."""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import TensorDataset

from datamodules.base import DatasetNotFoundError, KDDataModule
from errors import ConfigError


def read_csv(path: Path, delimiter: str) -> tuple[list[str], list[list[str]]]:
    """(header, rows); every row has the header's number of fields."""
    if not path.is_file():
        raise DatasetNotFoundError(f"CSV file {path} does not exist; set data.path=PATH (and data.test_path) "
                                   f"to a CSV file with a header row")
    try:
        return _read_rows(path, delimiter)
    except UnicodeDecodeError as error:  # its message would quote the undecodable bytes
        raise ConfigError(f"{path} is not UTF-8 text (byte {error.start} cannot be decoded: {error.reason}); save "
                          f"it as UTF-8 CSV, e.g. iconv -f latin1 -t utf-8 {path} > {path.stem}-utf8.csv") from None


def _read_rows(path: Path, delimiter: str) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="", encoding="utf-8-sig") as handle:  # -sig: drop a spreadsheet's BOM
        reader = csv.reader(handle, delimiter=delimiter)
        header = next(reader, None)
        if not header:
            raise ConfigError(f"{path} is empty; data=csv needs a header row naming the columns, then one row "
                              f"per example")
        header = [name.strip() for name in header]
        rows = []
        for row in reader:
            if not row or all(not field.strip() for field in row):
                continue  # blank lines, e.g. a trailing newline
            if len(row) != len(header):
                raise ConfigError(f"{path} line {reader.line_num} has {len(row)} fields but the header has "
                                  f"{len(header)}; fix that line (or set data.delimiter if the file is not "
                                  f"'{delimiter}'-separated)")
            rows.append(row)
    if not rows:
        raise ConfigError(f"{path} has a header but no rows of data")
    return header, rows


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def sorted_classes(labels: Sequence[str]) -> list[str]:
    """Distinct labels, numerically sorted when all are numbers (so labels 0..K-1 keep their values)."""
    distinct = set(labels)
    if all(_is_number(label) for label in distinct):
        return sorted(distinct, key=float)
    return sorted(distinct)


class CSVDataModule(KDDataModule):
    def __init__(self, name: str = "csv", path: str | None = None, label: str | None = None,
                 num_classes: int | None = None, input_shape=None, features: Sequence[str] | None = None,
                 ignore: Sequence[str] = (), test_path: str | None = None, test_size: int | float = 0.2,
                 delimiter: str = ",", **kwargs) -> None:
        if not path or not label:
            raise ConfigError("data=csv needs data.path=PATH (a CSV file with a header row) and "
                              "data.label=COLUMN (the column holding the class of each row)")
        self.path, self.label = Path(path).expanduser(), str(label)
        self.test_path = Path(test_path).expanduser() if test_path else None
        header, rows = read_csv(self.path, delimiter)
        if self.label not in header:
            raise ConfigError(f"label column '{self.label}' is not in {self.path} (columns: {', '.join(header)}); "
                              f"set data.label to one of them")
        self.feature_names = self._feature_columns(header, features, ignore)
        x, labels = self._parse(self.path, header, rows)
        self.classes = sorted_classes(labels)
        if len(self.classes) < 2:
            raise ConfigError(f"label column '{self.label}' of {self.path} holds a single class "
                              f"({self.classes[0]!r}); classification needs at least two")
        y = self._class_indices(labels, self.path)
        if self.test_path is not None:
            test_header, test_rows = read_csv(self.test_path, delimiter)
            missing = [c for c in [*self.feature_names, self.label] if c not in test_header]
            if missing:
                raise ConfigError(f"test file {self.test_path} lacks columns {missing} of {self.path}; give both "
                                  f"files the same columns")
            x_test, test_labels = self._parse(self.test_path, test_header, test_rows)
            y_test = self._class_indices(test_labels, self.test_path)
        else:
            x, y, x_test, y_test = self._split_off_test(x, y, test_size, kwargs.get("split_seed", 0))
        if num_classes is not None and int(num_classes) != len(self.classes):
            raise ConfigError(f"data.num_classes={num_classes} but column '{self.label}' of {self.path} has "
                              f"{len(self.classes)} classes ({', '.join(self.classes[:10])}"
                              f"{', ...' if len(self.classes) > 10 else ''}); remove the override (null reads it "
                              f"from the file)")
        shape = (len(self.feature_names),)
        if input_shape is not None and tuple(int(d) for d in input_shape) != shape:
            raise ConfigError(f"data.input_shape={list(input_shape)} but {self.path} has {shape[0]} feature "
                              f"columns; remove the override (null reads it from the file) or pick columns with "
                              f"data.features / data.ignore")
        super().__init__(name, len(self.classes), shape, **kwargs)
        self._raw = (x, y, x_test, y_test)
        self._datasets: tuple[TensorDataset, TensorDataset] | None = None
        self.mean = self.std = None

    # -- reading ----------------------------------------------------------------------------------------
    def _feature_columns(self, header: list[str], features, ignore) -> list[str]:
        if isinstance(features, str) or isinstance(ignore, str):
            raise ConfigError("data.features and data.ignore are lists of column names, e.g. "
                              "data.ignore=[id] or data.features=[a,b]")
        ignore = list(ignore or ())
        unknown = [c for c in [*(features or ()), *ignore] if c not in header]
        if unknown:
            raise ConfigError(f"columns {unknown} (data.features / data.ignore) are not in {self.path} "
                              f"(columns: {', '.join(header)}); use names from the header")
        if features:
            chosen = list(features)
            if self.label in chosen:
                raise ConfigError(f"the label column '{self.label}' is also listed in data.features; drop it from "
                                  f"the features")
        else:
            chosen = [c for c in header if c != self.label and c not in ignore]
        if not chosen:
            raise ConfigError(f"{self.path} has no feature columns besides the label '{self.label}'")
        return chosen

    def _parse(self, path: Path, header: list[str], rows: list[list[str]]) -> tuple[np.ndarray, list[str]]:
        """(features as float64 (N, D), label strings); one clear error for a non-numeric or missing cell."""
        columns = [header.index(name) for name in self.feature_names]
        label_column = header.index(self.label)
        x = np.empty((len(rows), len(columns)), dtype=np.float64)
        labels = []
        for r, row in enumerate(rows):
            for c, (name, column) in enumerate(zip(self.feature_names, columns)):
                text = row[column].strip()
                try:
                    value = float(text)
                except ValueError:
                    value = math.nan
                if not math.isfinite(value):
                    what = "is empty" if not text else f"holds {text!r}, not a finite number"
                    raise ConfigError(f"feature column '{name}' of {path} {what} (data row {r + 1}); features "
                                      f"must be numeric: leave the column out with data.ignore=[{name}], or "
                                      f"encode or fill it in the file")
                x[r, c] = value
            label = row[label_column].strip()
            if not label:
                raise ConfigError(f"label column '{self.label}' of {path} is empty in data row {r + 1}; give "
                                  f"every row a label or drop the row")
            labels.append(label)
        return x, labels

    def _class_indices(self, labels: list[str], path: Path) -> np.ndarray:
        index = {name: i for i, name in enumerate(self.classes)}
        unseen = sorted(set(labels) - set(index))
        if unseen:
            raise ConfigError(f"labels {unseen[:10]} in {path} never occur in the training file {self.path}; "
                              f"the model can only learn classes it is trained on: drop those rows")
        return np.asarray([index[label] for label in labels], dtype=np.int64)

    def _split_off_test(self, x, y, test_size, split_seed):
        """A seeded test split of the one file, drawn by `split_seed` like the val split."""
        n = len(y)
        if isinstance(test_size, bool) or not isinstance(test_size, (int, float)):
            raise ConfigError(f"data.test_size must be a count (int) or a fraction (float), got {test_size!r}")
        count = int(round(test_size * n)) if isinstance(test_size, float) else int(test_size)
        if not 1 <= count < n:
            raise ConfigError(f"data.test_size={test_size} gives {count} test rows out of {n} in {self.path}; "
                              f"use a value that leaves both test and training rows (or data.test_path=FILE)")
        order = np.random.default_rng(int(split_seed)).permutation(n)
        test, train = np.sort(order[:count]), np.sort(order[count:])
        return x[train], y[train], x[test], y[test]

    # -- tensors -----------------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        pass  # the user's own file, already read and checked in __init__

    def _build(self) -> tuple[TensorDataset, TensorDataset]:
        if self._datasets is None:
            x, y, x_test, y_test = self._raw
            fit_rows = self._split_indices(len(y))[0]  # the rows the model trains on: no val or test leakage
            self.mean = x[fit_rows].mean(axis=0)
            std = x[fit_rows].std(axis=0)
            self.std = np.where(std > 0, std, 1.0)  # a constant column stays constant (0) instead of dividing by 0

            def tensors(features, labels):
                scaled = torch.as_tensor((features - self.mean) / self.std, dtype=torch.float32)
                return TensorDataset(scaled, torch.as_tensor(labels, dtype=torch.int64))
            self._datasets = (tensors(x, y), tensors(x_test, y_test))
        return self._datasets

    def load_train(self):
        return self._build()[0]

    def load_test(self):
        return self._build()[1]
