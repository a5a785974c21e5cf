"""PlateauRestart (CKD's schedule): after `patience` epochs without a better validation metric, the best
checkpoint's weights come back and the learning rate is multiplied by `factor`; the plateau after
`max_decays` decays stops training on the best weights."""
import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from errors import ConfigError
from tasks.callbacks import PlateauRestart

# validation top-1 per epoch: best at epoch 1, then never better
SCRIPTED_TOP1 = [0.1, 0.5, 0.4, 0.3, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2]


class Climber(pl.LightningModule):
    """One weight that grows by the learning rate each epoch (loss -w, plain SGD), so the weights and the
    rates the callback leaves behind can be read off exactly."""

    def __init__(self, scripted=SCRIPTED_TOP1):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.scripted = scripted

    def training_step(self, batch, batch_idx):
        return -self.w

    def validation_step(self, batch, batch_idx):
        self.log("val/top1", self.scripted[self.current_epoch])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=1.0)


def test_plateau_reloads_best_weights_decays_lr_and_stops(tmp_path):
    loader = DataLoader(TensorDataset(torch.zeros(1, 1)), batch_size=1)
    seen = []

    class Record(pl.Callback):
        def on_train_epoch_start(self, trainer, module):
            seen.append((trainer.optimizers[0].param_groups[0]["lr"], float(module.w.detach())))

    module = Climber()
    trainer = pl.Trainer(max_epochs=len(SCRIPTED_TOP1), logger=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, accelerator="cpu",
                         callbacks=[PlateauRestart(patience=2, factor=0.1, max_decays=2), Record(),
                                    pl.callbacks.ModelCheckpoint(dirpath=tmp_path, monitor="val/top1", mode="max")])
    trainer.fit(module, loader, loader)
    # epochs 0-1 climb to the best (w=2); 2-3 plateau -> back to w=2, lr 0.1; 4-5 -> w=2, lr 0.01; 6-7 -> stop
    expected = [(1.0, 0.0), (1.0, 1.0), (1.0, 2.0), (1.0, 3.0), (0.1, 2.0), (0.1, 2.1), (0.01, 2.0), (0.01, 2.01)]
    assert seen == [pytest.approx(pair) for pair in expected]
    assert trainer.current_epoch == 8 and float(module.w) == pytest.approx(2.0)
    callback = next(c for c in trainer.callbacks if isinstance(c, PlateauRestart))
    assert callback.state_dict() == {"best": 0.5, "wait": 0, "decays": 2}


def test_plateau_restart_rejects_bad_settings():
    with pytest.raises(ConfigError, match="0 < factor < 1"):
        PlateauRestart(factor=1.5)


def ckd_while_loop(val_top1, lr, decay_rate, lr_decay_times, patience, epochs):
    """alextxu/ckd train_student.py's `while tot_steps // eval_every < epochs and times_lr_adjusted <
    lr_decay_times` with helper/loops.py train_distill's validation (one "epoch" = eval_every steps), on the
    Climber (w grows by the lr each epoch): (lr, w) at the start of each epoch it trains."""
    seen, w, best, best_w, last_improve, done_epochs, times = [], 0.0, -1.0, 0.0, 0, 0, 0
    while done_epochs < epochs and times < lr_decay_times:
        current = lr * decay_rate ** times  # helper/util.py early_stopping_adjust_lr
        while True:
            seen.append((current, w))
            w += current
            done_epochs += 1
            if val_top1[done_epochs - 1] > best:
                best, best_w, last_improve = val_top1[done_epochs - 1], w, done_epochs
            if done_epochs >= epochs or done_epochs - last_improve >= patience:
                break
        last_improve, w, times = done_epochs, best_w, times + 1  # reload the best weights, one more decay
    return seen


@pytest.mark.parametrize("scripted", [SCRIPTED_TOP1, [0.1, 0.5, 0.4, 0.3, 0.6, 0.55, 0.5, 0.5, 0.7, 0.2, 0.2, 0.2,
                                                      0.2, 0.2, 0.2, 0.2]])
def test_ckd_lr_decay_times_3_is_max_decays_2(tmp_path, scripted):
    """CKD's `--lr_decay_times 3` trains lr phases lr, lr/10, lr/100 and stops at the third plateau: that is
    PlateauRestart(max_decays=2) (the cells write lr_decay_times - 1)."""
    loader = DataLoader(TensorDataset(torch.zeros(1, 1)), batch_size=1)
    seen = []

    class Record(pl.Callback):
        def on_train_epoch_start(self, trainer, module):
            seen.append((trainer.optimizers[0].param_groups[0]["lr"], float(module.w.detach())))

    trainer = pl.Trainer(max_epochs=len(scripted), logger=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, accelerator="cpu",
                         callbacks=[PlateauRestart(patience=2, factor=0.1, max_decays=2), Record(),
                                    pl.callbacks.ModelCheckpoint(dirpath=tmp_path, monitor="val/top1", mode="max")])
    trainer.fit(Climber(scripted), loader, loader)
    expected = ckd_while_loop(scripted, 1.0, 0.1, lr_decay_times=3, patience=2, epochs=len(scripted))
    assert sorted({round(lr, 6) for lr, _ in expected}) == [0.01, 0.1, 1.0]  # three phases, not four
    assert seen == [pytest.approx(pair) for pair in expected]
