"""optlib._validate: one style of argument checking, ``ValueError("lr must be >= 0, got -1")``."""
import math

import numpy as np
import pytest
import torch

from optlib import _validate as v


def test_at_least_accepts_boundary_and_returns_value():
    assert v.at_least("lr", 0, 0.0) == 0
    assert v.at_least("lr", 0.5, 0.0) == 0.5
    assert v.at_least("lr", math.inf, 0.0) == math.inf


def test_at_least_message_names_argument_bound_and_value():
    with pytest.raises(ValueError, match=r"^lr must be >= 0(\.0)?, got -1$"):
        v.at_least("lr", -1, 0.0)


def test_positive_rejects_zero_negative_and_infinity():
    assert v.positive("h", 1e-12) == 1e-12
    for bad in (0, -1.0, math.inf):
        with pytest.raises(ValueError, match=r"^h must be a finite number > 0, got"):
            v.positive("h", bad)


def test_in_range_half_open_and_closed():
    assert v.in_range("momentum", 0.0, 0.0, 1.0) == 0.0
    assert v.in_range("momentum", 0.999, 0.0, 1.0) == 0.999
    with pytest.raises(ValueError, match=r"momentum must be in \[0(\.0)?, 1(\.0)?\), got 1"):
        v.in_range("momentum", 1.0, 0.0, 1.0)
    assert v.in_range("dampening", 1.0, 0.0, 1.0, high_inclusive=True) == 1.0
    with pytest.raises(ValueError, match=r"dampening must be in \[0(\.0)?, 1(\.0)?\], got -0.1"):
        v.in_range("dampening", -0.1, 0.0, 1.0, high_inclusive=True)


@pytest.mark.parametrize("fn", [lambda x: v.at_least("lr", x, 0.0), lambda x: v.positive("lr", x),
                                lambda x: v.in_range("lr", x, 0.0, 1.0)])
def test_nan_is_rejected_everywhere(fn):
    with pytest.raises(ValueError, match="lr must not be NaN"):
        fn(float("nan"))


def test_non_numbers_raise_type_error_and_bool_is_not_a_number():
    with pytest.raises(TypeError, match="lr must be a real number"):
        v.at_least("lr", "fast", 0.0)
    with pytest.raises(TypeError, match="lr must be a real number"):
        v.at_least("lr", None, 0.0)
    with pytest.raises(TypeError, match="lr must be a real number"):
        v.positive("lr", True)


def test_zero_dim_tensors_and_numpy_scalars_are_numbers():
    assert v.at_least("lr", torch.tensor(0.25), 0.0) == pytest.approx(0.25)
    assert v.positive("lr", np.float32(0.5)) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="lr must be >= 0"):
        v.at_least("lr", torch.tensor(-2.0), 0.0)


def test_positive_int():
    assert v.positive_int("steps", 3) == 3
    for bad in (0, -2, 2.0, True, "3", None):
        with pytest.raises(ValueError, match="steps must be a positive integer"):
            v.positive_int("steps", bad)


def test_one_of_lists_the_choices():
    assert v.one_of("mode", "a", ("a", "b")) == "a"
    with pytest.raises(ValueError, match=r"mode must be one of \['a', 'b'\], got 'c'"):
        v.one_of("mode", "c", ("b", "a"))


@pytest.mark.parametrize("text", ["0.1", b"0.1"])
def test_strings_are_not_numbers(text):
    # float("0.1") would accept it, and an optimizer would store the string and fail only at step()
    with pytest.raises(TypeError, match="lr must be a real number"):
        v.at_least("lr", text, 0.0)
