"""Inversion g -> (rs, d2, gamma_l): features, Gaussian-process regression, model files, direct fit."""
