"""scripts/digits_methods.py makes the digits method table from its own runs: every method x seed (here one method
that runs and one made for other models, one seed, tiny), records copied beside the tables and plots, a README
that names the command and the commit; a rerun reuses the finished runs (run folders keyed by the config's hash);
a tree with uncommitted changes is refused unless --allow-dirty, which the README then states."""
from __future__ import annotations

import pytest

from scripts import digits_methods

TINY = ["data.train_subset=32", "data.val_size=16", "data.test_subset=32", "data.batch_size=16",
        "trainer.max_epochs=1", "teacher.recipe.trainer.max_epochs=1", "teacher.recipe.data.train_subset=64",
        "fidelity.cka_max_examples=16"]


def test_digits_method_table(tmp_path, data_dir, monkeypatch, capsys):
    from runs import folders
    monkeypatch.setattr(folders, "git_state", lambda: {"git_commit": "0" * 40, "git_dirty": True})
    out, runs = tmp_path / "methods", tmp_path / "runs"
    argv = ["--seeds", "0", "--methods", "kd,deit_hard", "--out", str(out), *TINY, f"paths.output_dir={runs}",
            f"paths.data_dir={data_dir}"]
    with pytest.raises(SystemExit) as refused:  # uncommitted changes: nothing runs
        digits_methods.main(argv)
    assert refused.value.code == 2 and "uncommitted changes" in capsys.readouterr().err and not runs.exists()
    with pytest.raises(SystemExit) as done:
        digits_methods.main(["--allow-dirty", *argv])
    assert done.value.code == 0
    printed = capsys.readouterr().out
    assert "kd=kd seed=0: test top-1 " in printed and "kd=deit_hard: does not apply to this pair" in printed
    readme = (out / "README.md").read_text()
    assert "WITH UNCOMMITTED CHANGES" in readme and "`deit_hard`" in readme and "| scratch |" in readme
    for name in ("table.md", "agreement.md", "kl.md", "methods.png", "fidelity.png"):
        assert (out / name).is_file(), name
    assert len(list((out / "records").glob("*/record.json"))) == 1
    with pytest.raises(SystemExit):  # again: the finished run is reused, nothing trained
        digits_methods.main(["--allow-dirty", *argv])
    assert "kd=kd seed=0: test top-1" in capsys.readouterr().out and "0 runs trained here" in (out / "README.md").read_text()
