"""Training: the two strategies on one exact-GP core, the split, provenance and the typed info."""

import json

import numpy as np
import pytest

from shearcorr.errors import ShearcorrError
from shearcorr.inverse.ard import ARDGPR
from shearcorr.inverse.evaluation import evaluate
from shearcorr.inverse.gpr import PaperGPR
from shearcorr.inverse.training import ARD_TRANSFORMS, ARDTraining, PaperTraining, train


def test_paper_strategy_shares_one_lml_landscape_and_records_it(tiny_dataset):
    model, info = train(tiny_dataset, PaperTraining(n_grid=6), targets=("d2", "gamma_l"), seed=1)
    assert model.kind == "paper" and all(isinstance(gp, PaperGPR) for gp in model.regressors.values())
    assert info.model == "paper" and info.feature == "g_theta" and info.targets == ("d2", "gamma_l")
    assert info.search.lml.shape == (6, 6, 2)
    for i, t in enumerate(info.targets):  # every regressor sits at its target's optimum, inside the landscape's bounds
        gp = model.regressors[t]
        assert gp.l_ == info.search.l[i] and gp.sigma_ == info.search.sigma[i]
        assert info.l_bounds[0] <= gp.l_ <= info.l_bounds[1]
        assert info.search.lml_opt[i] >= info.search.lml[:, :, i].max() - 1e-9
    # 70/30 split of the 60 finished samples, disjoint, seeded
    assert len(model.train_index) == 42 and len(model.test_index) == 18
    assert not set(model.train_index) & set(model.test_index)
    again, _ = train(tiny_dataset, PaperTraining(n_grid=6), targets=("d2", "gamma_l"), seed=1)
    np.testing.assert_array_equal(again.test_index, model.test_index)
    prov = model.provenance
    assert prov["model"] == "paper" and prov["n_grid"] == 6 and prov["split_seed"] == 1 and prov["restarts"] == 10
    back = json.loads(info.to_json())
    assert back["lml_optimum"]["d2"]["l"] == info.search.l[0] and back["targets"] == ["d2", "gamma_l"]


def test_ard_strategy_learns_in_log_space_and_is_calibrated_on_held_out_data(tiny_dataset):
    model, info = train(tiny_dataset, ARDTraining(n_components=3, restarts=0))
    assert model.kind == "ard" and model.targets == ("rs", "d2", "gamma_l")
    for t, gp in model.regressors.items():
        assert isinstance(gp, ARDGPR) and gp.transform == ARD_TRANSFORMS[t]
        assert len(info.hyper[t]["length_scale"]) == 6  # PCA-3 of g(theta) + PCA-3 of g(q)
    assert model.provenance["pca_blocks"] and model.provenance["n_components"] == 3
    e = evaluate(model, tiny_dataset)
    assert e.selection.startswith("held-out") and e.n_samples == 18
    # 42 noise-free training samples on 10 x 11: the training mean as a guess gives Err ~ 0.30 for D2 ~ U(0.5, 3)
    # and gamma L ~ U(5, 30); the model does much better for D2 and clearly better for gamma L (11 angles only)
    assert e.err["d2"] < 0.1 and e.err["gamma_l"] < 0.25
    # 18 samples: at least 2/3 inside the 95 % intervals (a calibrated model has ~17)
    assert e.coverage95["d2"] >= 12 / 18 and e.coverage95["gamma_l"] >= 12 / 18


def test_bad_requests_are_one_line_errors(tiny_dataset):
    with pytest.raises(ShearcorrError, match="targets must be among"):
        train(tiny_dataset, PaperTraining(n_grid=4), targets=("rs", "radius"))
    with pytest.raises(ShearcorrError, match="feature must be one of"):
        ARDTraining(feature="g_phi")
    with pytest.raises(ShearcorrError, match="optimizer must be one of"):
        PaperTraining(optimizer="adam")
    with pytest.raises(ShearcorrError, match="strategy must be"):
        train(tiny_dataset, "paper")
    with pytest.raises(ShearcorrError, match="too few"):
        train(tiny_dataset.isel(sample=slice(0, 2)), PaperTraining(n_grid=4))


def test_the_same_seed_gives_the_same_model_whatever_the_load(tiny_dataset, monkeypatch):
    """Issue 14: the default BLAS thread count followed the load average, and the optimiser turned the
    round-off of 1 vs 2 threads into different hyperparameters. The default is now fixed."""
    import os

    models = []
    for load in (0.0, 8.0):
        monkeypatch.setattr(os, "getloadavg", lambda load=load: (load, load, load))
        models.append(train(tiny_dataset, ARDTraining(n_components=2, restarts=1), targets=("gamma_l",), seed=3)[0])
    a, b = (m.regressors["gamma_l"] for m in models)
    np.testing.assert_array_equal(a.length_scale_, b.length_scale_)
    with pytest.raises(ShearcorrError, match="threads must be a positive integer"):
        train(tiny_dataset, ARDTraining(n_components=2, restarts=0), targets=("gamma_l",), threads=0)
