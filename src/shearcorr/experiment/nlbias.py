r"""Second-order bias of weighted nonlinear least squares (Box 1971; Cook, Tsai & Wei 1986), general noise.

Model :math:`y = f(\theta_0) + \varepsilon`, :math:`E\varepsilon = 0`, :math:`{\rm Cov}\,\varepsilon = \Sigma`, estimate
:math:`\hat\theta` from the normal equations :math:`J(\hat\theta)^T W (y - f(\hat\theta)) = 0` with any fixed
weights W (not necessarily :math:`\Sigma^{-1}`). Expanding :math:`\hat\theta - \theta_0 = \delta_1 + \delta_2 + \dots`
in ε (J the Jacobian, :math:`F_i` the Hessian of :math:`f_i` in θ, :math:`M = J^TWJ`):

.. math::

    \delta_1 = M^{-1}J^TW\varepsilon,\qquad V = {\rm Cov}\,\delta_1 = M^{-1}J^TW\Sigma WJM^{-1},

    E[\hat\theta - \theta_0] \approx M^{-1}\Big\{-\tfrac12 J^TW t + u\Big\},\quad t_i = {\rm tr}(F_i V),\quad
    u_j = \sum_{i,k} F_{ijk}\,[M^{-1}J^TW\Sigma W - VJ^TW]_{ki}

(u = 0 when :math:`W = \Sigma^{-1}`). docs/theory.md, "Second-order bias of the pair fit", derives it.

Everything here is in *whitened* units: with :math:`W^{1/2}` applied to the model, :math:`\tilde J = W^{1/2}J`,
:math:`\tilde F_i = W_i^{1/2}F_i` and :math:`\tilde\Sigma = W^{1/2}\Sigma W^{1/2}`; the formula keeps its form with W
replaced by the identity. The noise is given as :math:`\tilde\Sigma = {\rm diag}(d) + L^TL` (a diagonal part and a
low-rank part, e.g. K samples of a correlated noise, :math:`L = (Y - \bar Y)/\sqrt{K-1}`), so no n x n matrix is formed.
"""

from __future__ import annotations

import numpy as np

from ..errors import ShearcorrError

__all__ = ["second_order_bias"]


def second_order_bias(jac, hess, diag=None, low_rank=None):
    r"""Second-order bias :math:`E[\hat\theta - \theta_0]` of a weighted least-squares estimate, and Cov δ₁.

    Parameters (whitened units, see the module docstring)
    ----------
    jac : (n, p) array
        :math:`\tilde J = W^{1/2}\,\partial f/\partial\theta` at the estimate.
    hess : (n, p, p) array
        :math:`\tilde F_i = W_i^{1/2}\,\partial^2 f_i/\partial\theta\partial\theta^T` (symmetric in the last two axes).
    diag : (n,) array or None
        Diagonal part of :math:`\tilde\Sigma` (None: ones, i.e. W is the inverse of this part of the noise).
    low_rank : (K, n) array or None
        L with :math:`\tilde\Sigma = {\rm diag}(d) + L^TL`.

    Returns
    -------
    bias : (p,) array, in the units of θ
    V : (p, p) array, the first-order covariance of the estimate under :math:`\tilde\Sigma`
    """
    J = np.asarray(jac, float)
    F = np.asarray(hess, float)
    n, p = J.shape
    if F.shape != (n, p, p):
        raise ShearcorrError(f"second_order_bias: Hessians of shape {F.shape}, expected {(n, p, p)}")
    d = np.ones(n) if diag is None else np.asarray(diag, float)
    Minv = np.linalg.pinv(J.T @ J)
    JS = J.T * d  # (p, n): J^T diag(d)
    JSJ = JS @ J
    if low_rank is not None and np.size(low_rank):
        L = np.asarray(low_rank, float).reshape(-1, n)
        G = L @ J  # (K, p)
        JSJ = JSJ + G.T @ G
        JS_low = G.T @ L  # J^T L^T L, (p, n)
    else:
        JS_low = None
    V = Minv @ JSJ @ Minv
    # A = M^-1 J^T Sigma - V J^T  (p, n); u_j = sum_{i,k} F_ijk A_ki
    A = Minv @ (JS if JS_low is None else JS + JS_low) - V @ J.T
    t = np.einsum("ijk,jk->i", F, V)
    u = np.einsum("ijk,ki->j", F, A)
    return Minv @ (-0.5 * J.T @ t + u), V
