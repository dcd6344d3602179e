"""The bundled Iris data and the bad copy of it that drills and demos train a wrong model on."""

from __future__ import annotations

import pandas as pd

from mloncall.data import iris


def test_corrupted_labels_relabel_every_row_and_leave_the_features_and_the_original_alone() -> None:
    frame = iris.iris_frame()
    bad = iris.corrupted_labels(frame)
    assert (bad[iris.TARGET] != frame[iris.TARGET]).all()
    assert bad[iris.TARGET].value_counts().to_dict() == frame[iris.TARGET].value_counts().to_dict()
    pd.testing.assert_frame_equal(bad[iris.FEATURES], frame[iris.FEATURES])
    pd.testing.assert_frame_equal(frame, iris.iris_frame())
