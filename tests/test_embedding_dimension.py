"""The n > 8.33·ln N rule: h_n against SPEC §8's reference values, and the minimum dimensions it gives."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate

from lit_modules.components.embedding_dimension import closed_form_dim, h_n, min_embedding_dim

# SPEC §8: h_n for n = 32, 64, 96, 128, 256, 512
REFERENCE = {32: -7.77471, 64: -15.4734, 96: -23.1726, 128: -30.8718, 256: -61.6692, 512: -123.264}


@pytest.mark.parametrize("n", sorted(REFERENCE))
def test_h_n_matches_the_reference_table_to_four_significant_digits(n):
    assert h_n(n) == pytest.approx(REFERENCE[n], rel=5e-5)


def test_h_n_equals_an_independent_adaptive_quadrature_of_the_definition():
    # Plain integrals of the definition (no log space), feasible for a small n.
    n = 12
    density = lambda t: math.sin(t) ** (n - 2)  # noqa: E731
    z = integrate.quad(density, 0, math.pi)[0]
    e = integrate.quad(lambda t: density(t) * math.exp(n * math.cos(t)), 0, math.pi)[0] / z
    en = integrate.quad(lambda t: density(t) * math.exp(n * math.cos(t)) * n * math.cos(t), 0, math.pi)[0] / z
    assert h_n(n) == pytest.approx(math.log(e) - en / e, rel=1e-9)


def test_h_n_is_finite_and_close_to_the_laplace_slope_at_4096():
    value = h_n(4096)
    assert np.isfinite(value)
    assert value / 4096 == pytest.approx(-0.2406, abs=5e-4)


@pytest.mark.parametrize(("vocabulary", "expected"), [(100_000, 96), (5_000_000, 128)])
def test_minimum_dimension_for_the_spec_vocabularies(vocabulary, expected):
    n = min_embedding_dim(vocabulary)
    assert n == expected
    assert 2 * math.log(vocabulary) + h_n(n) < 0 <= 2 * math.log(vocabulary) + h_n(n - 1)
    assert closed_form_dim(vocabulary) == pytest.approx(n, rel=0.02)


@pytest.mark.parametrize("bad", [1, 0, -5, 2.5])
def test_vocabulary_below_two_is_refused_in_one_line(bad):
    with pytest.raises(ValueError, match="at least 2") as err:
        min_embedding_dim(bad)
    assert "\n" not in str(err.value)


def test_evaluate_dimension_prints_the_rule_the_closed_form_and_the_table(capsys):
    from conftest import evaluate

    assert evaluate("--dimension", "100000") == 0
    out = capsys.readouterr().out
    assert "smallest n with 2·ln N + h_n < 0): 96" in out
    assert "8.33·ln N: 95.9" in out
    rows = {int(line.split()[0]): float(line.split()[1]) for line in out.splitlines() if line[:5].strip().isdigit()}
    assert sorted(rows) == [32, 64, 96, 128, 256, 512]
    for n, value in rows.items():
        assert value == pytest.approx(REFERENCE[n], rel=5e-5)


def _exit_code(*argv: str) -> int:
    """evaluate.py's exit code, whether it returns it or argparse exits with it."""
    from conftest import evaluate

    try:
        return evaluate(*argv)
    except SystemExit as stop:
        return stop.code


@pytest.mark.parametrize("bad", ["1", "0", "-3", "many"])
def test_evaluate_dimension_refuses_a_vocabulary_below_two_in_one_line(capsys, bad):
    assert _exit_code("--dimension", bad) == 2
    err = capsys.readouterr().err
    assert err.startswith("evaluate.py: error:") and err.count("\n") == 1
    assert "at least 2" in err or "invalid int" in err
