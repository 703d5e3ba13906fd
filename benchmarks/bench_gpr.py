"""Benchmark of the GPR training path: eigen-trick LML grid vs scikit-learn's optimiser.

Run: ``nice python benchmarks/bench_gpr.py [--n 1050 4200] [--grid 30] [--threads 1 2]``. Prints seconds and
the load average; no assertions. ``--threads``: BLAS thread counts to time one eigendecomposition with
(OpenBLAS threads spin while waiting, so on a busy machine more threads can be slower); the rest runs
with :func:`shearcorr.inverse.training.blas_threads` defaults. ``--ard``: also time the ARD model's fit.
Inputs are synthetic smooth g(theta)-like rows (101 features) with four targets, so the numbers measure
linear algebra only (the dataset itself does not change the cost).
"""

import argparse
import time

import numpy as np


def data(n, d=101, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.uniform(0, 1, (n, 4))
    th = np.linspace(0, np.pi, d)
    X = 1 + np.exp(-((th[None, :] - np.pi / 2) ** 2) / (0.05 + p[:, [0]])) * (0.5 + 0.5 * p[:, [1]]) + 0.01 * p[:, [2]]
    return X, p


def main():
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, WhiteKernel

    from shearcorr.inverse.gpr import PaperGPR, default_bounds, lml_grid, optimise_hyperparameters, tridiagonalise

    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, nargs="+", default=[1050, 4200])
    ap.add_argument("--grid", type=int, default=30)
    ap.add_argument("--sklearn-max-n", type=int, default=1050, help="run sklearn's optimiser up to this n")
    ap.add_argument("--threads", type=int, nargs="*", default=[1, 2], help="BLAS threads to time eigh and the tridiagonal reduction with")
    ap.add_argument("--ard", action="store_true", help="also time ARDGPR.fit (12 PCA inputs, 4 targets)")
    a = ap.parse_args()
    import os

    from threadpoolctl import threadpool_limits

    from shearcorr.inverse.ard import ARDGPR
    from shearcorr.inverse.training import blas_threads

    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    for n in a.n:
        X, Y = data(n)
        from scipy.spatial.distance import cdist

        K = np.exp(-cdist(X, X, "sqeuclidean") / 2.0)
        for th in a.threads:
            with threadpool_limits(th):
                t = time.perf_counter()
                np.linalg.eigh(K)
                t_eigh = time.perf_counter() - t
                t = time.perf_counter()
                tridiagonalise(K.copy(), Y)
                t_tri = time.perf_counter() - t
                print(f"n={n}: {th} BLAS thread(s): eigh {t_eigh:.2f} s, tridiagonal reduction + Q^T Y "
                      f"{t_tri:.2f} s (ratio {t_eigh / t_tri:.2f})")
        del K
        if a.ard:
            from shearcorr.inverse.features import ProfileFeatures

            Xp = ProfileFeatures(feature="g_theta", n_theta=X.shape[1] - 1, standardise=True,
                                 n_components=12).fit_transform(X)
            t = time.perf_counter()
            with blas_threads():
                for i in range(4):
                    ARDGPR(transform="log", n_restarts=1, max_opt_samples=1000).fit(Xp, Y[:, i] + 0.1)
            print(f"n={n}: ARD fit (12 inputs, hyperparameters on <= 1000 rows, 1 restart) for 4 targets "
                  f"{time.perf_counter() - t:.1f} s")
    for n in a.n:
        X, Y = data(n)
        lb = default_bounds(X)
        t = time.perf_counter()
        lml_grid(X, Y, [lb[0]], np.geomspace(1e-6, 1, a.grid))
        t_one = time.perf_counter() - t
        t = time.perf_counter()
        with blas_threads():
            r = optimise_hyperparameters(X, Y, n_l=a.grid, n_sigma=a.grid)
        t_grid = time.perf_counter() - t
        t = time.perf_counter()
        gps = [PaperGPR(l=r.l[i], sigma=r.sigma[i], optimizer=None).fit(X, Y[:, i]) for i in range(4)]
        t_fact = time.perf_counter() - t
        Xt, _ = data(1000, seed=1)
        t = time.perf_counter()
        for gp in gps:
            gp.predict(Xt, return_std=True)
        t_pred = (time.perf_counter() - t) / 1000
        print(f"n={n}: one l (reduction + {a.grid} sigmas, 4 targets) {t_one:.2f} s; {a.grid}x{a.grid} grid + refinement "
              f"for 4 targets {t_grid:.1f} s; Cholesky + alpha for 4 targets {t_fact:.2f} s; "
              f"predict with std {1e3 * t_pred:.3f} ms/sample (4 targets)")
        if n <= a.sklearn_max_n:
            t = time.perf_counter()
            k = RBF(np.sqrt(r.l[0]), (np.sqrt(lb[0]), np.sqrt(lb[1]))) + WhiteKernel(1e-3, (1e-6, 1))
            gp = GaussianProcessRegressor(k, alpha=0.0, normalize_y=True, n_restarts_optimizer=0).fit(X, Y[:, 0])
            t_sk = time.perf_counter() - t
            print(f"n={n}: sklearn L-BFGS-B, one start, one target: {t_sk:.1f} s "
                  f"(LML {gp.log_marginal_likelihood_value_:.1f} vs grid {r.lml_opt[0]:.1f}); "
                  f"x 11 starts x 4 targets = {44 * t_sk:.0f} s")


if __name__ == "__main__":
    main()
