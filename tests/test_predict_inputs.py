"""inference/inputs.py alone (no stack): what a prediction request may send, for a tabular
model with feature names (a CSV upload's header), computed a second way by hand."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from inference.inputs import InputError, input_spec, parse_body

TABLE = input_spec((3,), ("height", "weight", "age"), "animals", max_rows=4)
DIGITS = input_spec((1, 8, 8), None, "digits", max_rows=4)


def body(value: object) -> bytes:
    return json.dumps(value).encode()


def test_rows_are_put_in_the_models_feature_order():
    rows = [{"age": 3, "height": 1.5, "weight": 60}, {"weight": 1, "age": 2, "height": 0}]
    x = parse_body("json", body({"rows": rows}), TABLE)
    np.testing.assert_array_equal(x, np.array([[1.5, 60, 3], [0, 1, 2]], np.float32))
    assert x.dtype == np.float32
    by_csv = parse_body("csv", b"age,weight,height\n3,60,1.5\n2,1,0\n", TABLE)
    np.testing.assert_array_equal(by_csv, x)
    by_arrays = parse_body("json", body({"inputs": [[1.5, 60, 3], [0, 1, 2]]}), TABLE)
    np.testing.assert_array_equal(by_arrays, x)


@pytest.mark.parametrize(("kind", "payload", "field", "words"), [
    ("json", body({"rows": [{"height": 1, "weight": 2, "age": 3, "colour": 4}]}), "rows[0]",
     "unknown feature(s) 'colour'; the model's features are: height, weight, age"),
    ("json", body({"rows": [{"height": 1}]}), "rows[0]", "lacks feature(s) 'weight', 'age'"),
    ("json", body({"rows": [{"height": "tall", "weight": 2, "age": 3}]}), "rows[0].height",
     "send a number"),
    ("json", b'{"rows": [{"height": NaN, "weight": 2, "age": 3}]}', "rows[0].height",
     "NaN or infinite"),
    ("json", body({"rows": [{"height": 1, "weight": 2, "age": 3}] * 5}), "rows", "at most 4"),
    ("csv", b"height,weight\n1,2\n", "file: header", "lacks feature(s) 'age'"),
    ("csv", b"height,weight,age\n1,2,x\n", "file: line 2, column age", "'x' is not a number"),
    ("csv", b"height,weight,age\n1,2\n", "file: line 2", "has 2 values"),
    ("image", b"\x89PNG", "file", "not an image"),
])
def test_table_inputs_name_what_to_change(kind, payload, field, words):
    with pytest.raises(InputError) as caught:
        parse_body(kind, payload, TABLE, [{"name": "a.png", "size": len(payload)}])
    assert caught.value.field == field and words in caught.value.message, caught.value


def test_images_are_resized_grayscale_and_scaled_to_the_training_range():
    pixels = np.zeros((16, 16, 3), np.uint8)
    pixels[:, 6:10] = 255  # a white bar, in colour
    png = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(png, "PNG")
    data = png.getvalue()
    x = parse_body("image", data + data, DIGITS, [{"name": "a.png", "size": len(data)},
                                                   {"name": "b.png", "size": len(data)}])
    assert x.shape == (2, 1, 8, 8) and x.dtype == np.float32
    expected = np.asarray(Image.fromarray(pixels, "RGB").convert("L").resize(
        (8, 8), Image.Resampling.BILINEAR), np.float32) * (16 / 255)
    np.testing.assert_allclose(x[0, 0], expected, rtol=1e-6)
    assert x[0, 0, :, 3:5].min() > 13 and x[0, 0, :, 0].max() == 0  # ink in the middle


def test_digits_rows_may_be_flat_or_shaped_but_not_otherwise():
    flat = parse_body("json", body({"inputs": [list(range(64))]}), DIGITS)
    shaped = parse_body("json", body({"inputs": [np.arange(64).reshape(8, 8).tolist()]}), DIGITS)
    np.testing.assert_array_equal(flat, shaped)
    with pytest.raises(InputError, match=r"has shape 2x32; the model takes 64 \(1x8x8\)"):
        parse_body("json", body({"inputs": [np.zeros((2, 32)).tolist()]}), DIGITS)
    with pytest.raises(InputError, match="no feature names"):
        parse_body("json", body({"rows": [{"a": 1}]}), DIGITS)


def test_json_nested_thousands_deep_is_a_422_not_a_crash():
    deep = b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(InputError, match="nested too deep") as caught:
        parse_body("json", deep, DIGITS)
    assert caught.value.field == "body" and caught.value.status == 422
