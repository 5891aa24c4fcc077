"""Evaluation figures (clamp.eval.plots): every one gets its layout, whatever its labels."""

from __future__ import annotations

import warnings

import numpy as np


def test_a_confusion_matrix_of_long_class_names_is_laid_out(tmp_path):
    from clamp.eval.plots import plot_confusion

    classes = ["Johann Sebastian Bach", "Wolfgang Amadeus Mozart", "Ludwig van Beethoven"]
    cm = np.array([[2, 1, 0], [0, 3, 0], [1, 0, 4]])
    with warnings.catch_warnings():
        # matplotlib says "Tight layout not applied" when the labels cannot fit the figure
        warnings.simplefilter("error")
        path = plot_confusion(cm, classes, tmp_path / "cm.png", "composer: user prompts")
    from PIL import Image

    width, height = Image.open(path).size
    assert width > 3 * 110 and height > 3 * 110  # at 110 dpi: wider and taller than 3 classes alone need
