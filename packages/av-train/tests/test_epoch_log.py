"""Logs that are files get one plain line per epoch (a progress bar there is one unreadable line)."""

from __future__ import annotations

import io

import lightning as L
import torch

from av_train.epoch_log import EpochLog, format_metrics, wanted


class _Tiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.lin(x), y)
        self.log("train_loss", loss, on_epoch=True, on_step=False)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_wer", torch.tensor(0.25))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_one_line_per_epoch_with_train_and_validation_metrics(tmp_path):
    data = torch.utils.data.TensorDataset(torch.randn(8, 2), torch.randn(8, 1))
    loader = torch.utils.data.DataLoader(data, batch_size=4)
    out = io.StringIO()
    trainer = L.Trainer(max_epochs=2, callbacks=[EpochLog(stream=out)], enable_progress_bar=False, logger=False,
                        enable_checkpointing=False, default_root_dir=tmp_path, enable_model_summary=False)
    trainer.fit(_Tiny(), loader, loader)
    lines = out.getvalue().splitlines()
    assert [ln.split("  ")[0] for ln in lines] == ["epoch 1/2 step 2", "epoch 2/2 step 4"]
    assert all("train_loss " in ln and "val_wer 0.25" in ln and ln.endswith(" s)") for ln in lines), lines


def test_lines_only_without_a_live_bar():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    assert wanted(True, io.StringIO()) and wanted(False, Tty()) and not wanted(True, Tty())
    assert format_metrics({"b": torch.tensor(0.123456), "a": 2, "c": float("nan"), "d": "x"}) == "a 2  b 0.1235"
