"""Validation of OIP tensors and /predict instances against a signature, without pandas."""

from __future__ import annotations

import numpy as np
import pytest

from mloncall.core.errors import IntegrityError
from mloncall.serving.protocol import infer_response, requested_outputs, split_infer_body
from mloncall.serving.tensors import rows_from_oip
from mloncall.serving.validation import (
    FeatureSchema,
    RequestError,
    apply_policies,
    out_of_range,
    range_flags,
    rows_from_instances,
)
from tests.serving.conftest import FEATURES, ROW

SCHEMA = FeatureSchema(
    FEATURES, ["setosa", "versicolor", "virginica"], [4.3, 2.0, 1.0, 0.1], [7.9, 4.4, 6.9, 2.5]
)
VALUES = [ROW[f] for f in FEATURES]


def tensor(data: object, shape: list[int], name: str = "input", datatype: str = "FP32") -> dict[str, object]:
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


def refused(fn: object, *args: object, match: str, reason: str) -> RequestError:
    with pytest.raises(RequestError, match=match) as info:
        fn(*args)  # type: ignore[operator]
    assert info.value.status == 400 and info.value.reason == reason
    return info.value


def test_matrix_tensor_flat_and_nested() -> None:
    flat = rows_from_oip([tensor(VALUES * 2, [2, 4])], SCHEMA, 10)
    nested = rows_from_oip([tensor([VALUES, VALUES], [2, 4], datatype="FP64")], SCHEMA, 10)
    assert flat.shape == (2, 4) and flat.dtype == np.float64
    assert np.array_equal(flat, nested) and list(flat[0]) == VALUES


def test_one_tensor_per_feature_in_any_order() -> None:
    inputs = [
        tensor([ROW[f], ROW[f]], [2] if i % 2 else [2, 1], name=f) for i, f in enumerate(reversed(FEATURES))
    ]
    X = rows_from_oip(inputs, SCHEMA, 10)
    assert list(X[1]) == VALUES


def test_binary_tensor_data() -> None:
    raw = np.asarray([VALUES], dtype="<f4").tobytes()
    inputs = [
        {"name": "input", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": len(raw)}}
    ]
    X = rows_from_oip(inputs, SCHEMA, 10, memoryview(raw))
    assert np.allclose(X[0], VALUES)
    refused(
        rows_from_oip,
        inputs,
        SCHEMA,
        10,
        memoryview(raw[:-4]),
        match="runs past the end",
        reason="wrong_shape",
    )
    refused(
        rows_from_oip,
        inputs,
        SCHEMA,
        10,
        memoryview(raw + raw),
        match="more binary data",
        reason="wrong_shape",
    )


@pytest.mark.parametrize(
    ("inputs", "match", "reason"),
    [
        ([], "non-empty list", "wrong_shape"),
        ("x", "non-empty list", "wrong_shape"),
        ([tensor(VALUES, [1, 3])], r"shape \[1, 3\] should be \[n, 4\]", "wrong_shape"),
        ([tensor(VALUES, [4])], r"should be \[n, 4\]", "wrong_shape"),
        ([tensor(VALUES, [1, 4], datatype="INT64")], "datatype 'INT64' is not supported", "wrong_datatype"),
        ([tensor(VALUES, [1, 4], datatype="BYTES")], "datatype 'BYTES'", "wrong_datatype"),
        ([tensor(VALUES, [2, 4])], r"has 4 values, shape \[2, 4\] needs 8", "wrong_shape"),
        ([tensor([VALUES], [2, 4])], "has 1 rows, the shape says 2", "wrong_shape"),
        ([tensor([VALUES[:3]], [1, 4])], "row 0: expected 4 values, got 3", "wrong_shape"),
        (
            [tensor([5.1, 3.5, "1.4", 0.2], [1, 4])],
            "row 0, feature 'petal_length': expected a number, got a string",
            "wrong_type",
        ),
        (
            [tensor([5.1, True, 1.4, 0.2], [1, 4])],
            "feature 'sepal_width': expected a number, got a boolean",
            "wrong_type",
        ),
        ([tensor([5.1, None, 1.4, 0.2], [1, 4])], "got null", "wrong_type"),
        ([tensor([[5.1, [3.5], 1.4, 0.2]], [1, 4])], "got a list", "wrong_type"),
        (
            [tensor([*VALUES, 5.1, 3.5, 1.4, {"a": 1}], [2, 4])],
            "row 1, feature 'petal_width'.*object",
            "wrong_type",
        ),
        ([tensor([5.1, 3.5, 1.4, 1e300], [1, 4])], "row 0, feature 'petal_width'.*too large", "not_finite"),
        ([tensor(VALUES * 3, [3, 4])], "3 rows, more than the limit of 2", "too_many_rows"),
        ([tensor([], [0, 4])], "no rows", "wrong_shape"),
        ([{"name": "input", "shape": [1, 4], "datatype": "FP32"}], "no 'data'", "wrong_shape"),
        ([tensor("abc", [1, 4])], "'data' must be a list", "wrong_shape"),
        ([tensor(VALUES, "1,4")], "'shape' must be a list", "wrong_shape"),
        (
            [tensor(VALUES, [1, 4]), tensor(VALUES, [1, 4], name="other")],
            "unknown input 'input'",
            "unknown_feature",
        ),
        (
            [tensor([1.0], [1], name=f) for f in FEATURES[:3]],
            "missing input for feature 'petal_width'",
            "missing_feature",
        ),
        (
            [tensor([1.0], [1], name=f) for f in FEATURES] + [tensor([1.0], [1], name="sepal_length")],
            "given twice",
            "wrong_shape",
        ),
        (
            [tensor([1.0], [1], name=f) for f in FEATURES[:3]]
            + [tensor([1.0, 2.0], [2], name="petal_width")],
            "2 rows, other inputs have 1",
            "wrong_shape",
        ),
        (
            [tensor([1.0], [1], name=f) for f in FEATURES[:3]] + [tensor(["x"], [1], name="petal_width")],
            "input 'petal_width' row 0: expected a number",
            "wrong_type",
        ),
        ([tensor([1.0], [1, 2], name=f) for f in FEATURES], r"should be \[n\] or \[n, 1\]", "wrong_shape"),
    ],
)
def test_bad_oip_inputs_name_the_field_and_row(inputs: object, match: str, reason: str) -> None:
    refused(rows_from_oip, inputs, SCHEMA, 2, match=match, reason=reason)


def test_instances() -> None:
    X = rows_from_instances([ROW, dict(reversed(list(ROW.items())))], SCHEMA, 10)
    assert X.shape == (2, 4) and list(X[1]) == VALUES


@pytest.mark.parametrize(
    ("instances", "match", "reason"),
    [
        ({"sepal_length": 1}, "must be a list of objects", "wrong_shape"),
        ([], "no rows", "wrong_shape"),
        ([ROW, [1, 2, 3, 4]], r"instances\[1\]: expected an object", "wrong_shape"),
        (
            [ROW, {k: v for k, v in ROW.items() if k != "petal_width"}],
            r"instances\[1\]: missing feature 'petal_width'",
            "missing_feature",
        ),
        ([{**ROW, "colour": 1.0}], r"instances\[0\]: unknown feature 'colour'", "unknown_feature"),
        (
            [{**ROW, "sepal_width": "3.5"}],
            r"instances\[0\].sepal_width: expected a number, got a string",
            "wrong_type",
        ),
        ([{**ROW, "sepal_width": False}], "got a boolean", "wrong_type"),
        ([{**ROW, "sepal_width": {"v": 1}}], "got an object", "wrong_type"),
        ([ROW] * 3, "3 rows, more than the limit of 2", "too_many_rows"),
    ],
)
def test_bad_instances_name_the_field_and_row(instances: object, match: str, reason: str) -> None:
    refused(rows_from_instances, instances, SCHEMA, 2, match=match, reason=reason)


def test_out_of_range_mask_and_flags() -> None:
    X = np.asarray([VALUES, [9.0, 3.0, 0.5, 0.2]])
    mask = out_of_range(X, SCHEMA)
    assert mask is not None and mask.tolist() == [[False] * 4, [True, False, True, False]]
    assert range_flags(mask, SCHEMA) == [[], ["out_of_range:sepal_length", "out_of_range:petal_length"]]
    assert out_of_range(np.asarray([VALUES]), SCHEMA) is None


def test_signature_problems_are_integrity_errors() -> None:
    with pytest.raises(IntegrityError, match="no features"):
        FeatureSchema.from_signature({"classes": ["a"]}, where="m:1")
    with pytest.raises(IntegrityError, match="repeats"):
        FeatureSchema.from_signature(
            {"features": [{"name": "a"}, {"name": "a"}], "classes": ["x"]}, where="m:1"
        )
    schema = FeatureSchema.from_signature({"features": [{"name": "a"}], "classes": ["x"]}, where="m:1")
    assert not schema.has_range and out_of_range(np.asarray([[1e30]]), schema) is None


def test_binary_request_and_response_framing() -> None:
    header = b'{"inputs": [], "parameters": {"binary_data_output": true}}'
    doc, binary = split_infer_body(header + b"\x00" * 8, str(len(header)))
    assert binary is not None and len(binary) == 8
    outputs, binary_names = requested_outputs(doc)
    assert outputs == ("label", "probabilities") and binary_names == {"label", "probabilities"}
    probs = np.asarray([[0.25, 0.75]], np.float32)
    body, json_length = infer_response(
        model="m", version=1, request_id="r", labels=["ab"], probabilities=probs,
        outputs=outputs, binary=binary_names, parameters={},
    )  # fmt: skip
    assert json_length is not None
    assert body[json_length:] == b"\x02\x00\x00\x00ab" + np.asarray([0.25, 0.75], "<f4").tobytes()
    with pytest.raises(RequestError, match="does not fit"):
        split_infer_body(b"{}", "10")
    with pytest.raises(RequestError, match="unknown output 'score'"):
        requested_outputs({"outputs": [{"name": "score"}]})


# --- per-feature policy (runbook 6's workaround) -----------------------------------------------------------


def test_a_per_feature_policy_imputes_flags_or_rejects_feature_by_feature() -> None:
    schema = FeatureSchema.from_signature(
        {
            "features": [
                {"name": f, "min": lo, "max": hi, "quantiles": {"0.5": med}}
                for f, lo, hi, med in zip(
                    FEATURES, [4.3, 2.0, 1.0, 0.1], [7.9, 4.4, 6.9, 2.5], [5.8, 3.0, 4.35, 1.3], strict=True
                )
            ],
            "classes": ["setosa", "versicolor", "virginica"],
        },
        where="test",
    )
    no_width = {k: v for k, v in ROW.items() if k != "petal_width"}
    refused(
        rows_from_instances,
        [no_width],
        schema,
        10,
        match="missing feature 'petal_width'",
        reason="missing_feature",
    )
    X = rows_from_instances([no_width, {**ROW, "petal_length": 50.0}], schema, 10, frozenset({"petal_width"}))
    assert np.isnan(X[0, 3])
    policies = {"petal_width": "impute", "petal_length": "impute"}
    scored, flagged, flags = apply_policies(X, schema, default="reject", policies=policies, row_name=str)
    assert scored[0, 3] == 1.3 and scored[1, 2] == 4.35 and flagged is None
    assert flags == [["imputed:petal_width"], ["imputed:petal_length"]]
    assert X[1, 2] == 50.0  # what the client sent is what the prediction log keeps

    wide = np.array([[50.0, 3.0, 4.0, 1.0]])
    _, flagged, flags = apply_policies(
        wide, schema, default="reject", policies={"sepal_length": "flag"}, row_name=str
    )
    assert flagged is not None and flags == [["out_of_range:sepal_length"]]
    with pytest.raises(RequestError, match="sepal_length"):
        apply_policies(wide, schema, default="flag", policies={"sepal_length": "reject"}, row_name=str)
    assert (
        apply_policies(np.array([VALUES]), schema, default="reject", policies=policies, row_name=str)[2]
        is None
    )
