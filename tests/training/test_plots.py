"""The pictures of a training run: valid PNGs of the loss curve and ROC curves, the ROC curve's area equal to the
ROC-AUC the demo prints, and a clear error without matplotlib."""

import sys

import numpy as np
import pytest
from PIL import Image

from transformers_clipflant5.testing.synthetic import roc_auc
from transformers_clipflant5.training.plots import curve_area, plot_loss_curve, plot_roc_curves, roc_curve


def test_roc_curve_area_is_the_roc_auc():
    rng = np.random.default_rng(0)
    # Rounded scores, so that ties between and within the groups occur (they count half in the AUC).
    positive = np.round(rng.normal(0.7, 0.2, 50), 1).tolist()
    negative = np.round(rng.normal(0.4, 0.2, 70), 1).tolist()
    fpr, tpr = roc_curve(positive, negative)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert curve_area(fpr, tpr) == pytest.approx(roc_auc(positive, negative), abs=1e-12)
    assert curve_area(*roc_curve([1.0, 2.0], [0.0])) == 1.0 and curve_area(*roc_curve([0.0], [1.0, 2.0])) == 0.0
    with pytest.raises(ValueError, match="at least one matching and one mismatched"):
        roc_curve([], [0.5])


def test_plots_are_png_files(tmp_path):
    history = [{"loss": 2.0 / step, "step": step, "grad_norm": 1.0} for step in range(10, 110, 10)]
    history.append({"train_runtime": 12.0, "step": 100})  # Trainer's final summary: no loss, not a point
    loss = plot_loss_curve(history, tmp_path / "sub" / "loss.png")
    roc = plot_roc_curves(
        {"before": ([0.5, 0.4], [0.5, 0.6]), "after": ([0.9, 0.8], [0.1, 0.3])}, tmp_path / "roc.png"
    )
    for path in (loss, roc):
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width > 200 and image.height > 200
            image.verify()
    with pytest.raises(ValueError, match="no training loss"):
        plot_loss_curve([{"train_runtime": 1.0, "step": 3}], tmp_path / "empty.png")


def test_plotting_without_matplotlib_says_what_to_install(tmp_path, monkeypatch):
    for name in [name for name in sys.modules if name == "matplotlib" or name.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what an environment without it gives the import
    with pytest.raises(ImportError, match=r"needs matplotlib: pip install 'transformers-clipflant5\[train\]'"):
        plot_loss_curve([{"loss": 1.0, "step": 1}], tmp_path / "loss.png")
