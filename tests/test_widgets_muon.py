"""optlib.widgets.muon: the Newton-Schulz widget of chapter 17 builds and draws without a kernel."""

import ipywidgets as w
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from optlib.optim.muon import NS_COEFFICIENTS, newton_schulz
from optlib.widgets import muon

pytestmark = pytest.mark.usefixtures("figures_closed")


def test_newton_schulz_widget_has_the_promised_controls_and_draws_its_default():
    plt.close("all")
    box = muon.newton_schulz_widget()
    assert isinstance(box, w.VBox)
    controls = box.children[0].children
    assert [c.description for c in controls] == ["steps", "coefficients"]
    steps, coefficients = controls
    assert (steps.value, coefficients.value) == (5, "quintic")
    assert list(coefficients.options) == ["quintic", "cubic"]
    left, right = plt.gcf().axes[:2]
    assert len(left.lines) == 5 + 1 and len(right.lines) == 2
    # five quintic steps on a spectrum from 1 down to 1e-3 (normalized: above 0.002 except the tail)
    assert right.get_title().startswith("output σ in [")
    coefficients.value = "cubic"
    assert plt.gcf().axes[0].get_title() == "cubic, 5 steps"


def test_iterate_polynomial_matches_newton_schulz_on_singular_values():
    G = muon.spectrum_matrix(12, 7, seed=3)
    s = torch.linalg.svdvals(G / G.norm()).numpy()
    for name, coef in muon.COEFFICIENTS.items():
        for k in (1, 3, 5):
            predicted = np.sort(np.abs(muon.iterate_polynomial(s, coef, k)))[::-1]
            got = torch.linalg.svdvals(newton_schulz(G, k, coef, eps=0.0)).numpy()
            np.testing.assert_allclose(got, predicted, rtol=1e-9, atol=1e-12, err_msg=f"{name}, {k} steps")


def test_quintic_band_and_cubic_convergence():
    s = np.logspace(np.log10(0.002), 0, 2001)
    five = muon.iterate_polynomial(s, NS_COEFFICIENTS, 5)
    assert 0.6 < five.min() < 0.7 and 1.15 < five.max() < 1.25
    assert np.allclose(muon.iterate_polynomial([0.01, 0.5], muon.COEFFICIENTS["cubic"], 40), 1.0)


def test_spectrum_matrix_has_the_promised_singular_values_and_draw_checks_its_argument():
    G = muon.spectrum_matrix()
    assert G.shape == (64, 32) and G.dtype == torch.float64
    sv = torch.linalg.svdvals(G)
    assert sv[0].item() == pytest.approx(1.0) and sv[-1].item() == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="coefficients"):
        muon.draw_newton_schulz(5, "septic")
    left, right = muon.draw_newton_schulz(10, "cubic", G)
    assert right.get_title().startswith("output σ in [")
