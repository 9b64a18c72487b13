"""ArviZ conversion: a fitted estimator (or aligned restarts) as an ``xarray.DataTree``.

Pyro has no ArviZ converter for SVI; this one reads the estimator's posterior protocol
(``posterior_draws``, ``log_likelihood``, ``sample_posterior_predictive``) and builds the
groups with ``arviz_base.from_dict``, so arviz-stats and arviz-plots work unchanged.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..models.sparse_vae import check_positive_int

__all__ = ["to_arviz", "chains_of"]

_DIMS = {"W": ["feature", "factor"], "inclusion": ["feature", "factor"], "eta": ["factor"],
         "sigma": ["feature"], "z": ["obs_id", "factor"]}
# how each posterior variable follows a factor alignment: (factor axis after draw, flips sign)
_ALIGN = {"W": (-1, True), "inclusion": (-1, False), "eta": (-1, False), "z": (-1, True)}


def chains_of(model):
    """The fitted estimators behind ``model`` with their factor alignment.

    Parameters
    ----------
    model : fitted SparseVAE / VAE, or :class:`pyro_sparse.restarts.Restarts`

    Returns
    -------
    list of (estimator, perm, signs)
        One entry per chain; ``perm`` and ``signs`` (shape (K,)) put factors into the
        common order (identity for a single estimator).
    """
    if hasattr(model, "estimators_") and hasattr(model, "permutations_"):
        return list(zip(model.estimators_, model.permutations_, model.signs_))
    if not hasattr(model, "posterior_draws"):
        raise TypeError(f"expected a fitted SparseVAE, VAE or Restarts, got "
                        f"{type(model).__name__}")
    model._check_fitted()
    K = model.n_factors
    return [(model, np.arange(K), np.ones(K))]


def _aligned(name, arr, perm, signs):
    if name not in _ALIGN:
        return arr
    axis, flip = _ALIGN[name]
    arr = np.take(arr, perm, axis=axis)
    return arr * signs if flip else arr


def _posterior_note(est) -> str:
    kinds = {"meanfield": "mean-field Normal", "lowrank": "low-rank Normal",
             "spikeslab": "per-entry spike-and-slab",
             "spikeslab_lowrank": "spike-and-slab (marginals per entry, low-rank Gaussian "
                                  "copula)"}
    if getattr(est, "w_guide", None) in kinds:
        kind = kinds[est.w_guide]
        return (f"W: draws from the {kind} q(W), each column times exp(sd_k e) for "
                "the posterior spread along its scale symmetry with z "
                "(pyro_sparse.infer.scale_symmetry); inclusion = p*(W_s, eta) per draw. "
                "eta (EM M-step), sigma and the network weights are point estimates, "
                "repeated in every draw.")
    if hasattr(est, "loadings_"):
        return ("point mass: the MAP guide gives one value of W, eta and sigma; every draw "
                "is that point (within-chain spread is zero, so use restarts as chains for "
                "R-hat). inclusion holds p*(W_MAP, eta), the conditional posterior of gamma.")
    return ("point mass: the VAE's global parameters (decoder, sigma) are point estimates; "
            "every draw is that point.")


def to_arviz(model, num_samples: int = 1000, X=None, posterior_predictive: bool = False,
             log_likelihood: bool = False, factors: bool = False,
             num_predictive: int | None = None,
             n_particles: int = 16, batch_size: int = 256, seed: int = 0):
    """Posterior draws, loss trace and (optionally) predictive groups as a DataTree.

    Parameters
    ----------
    model : fitted SparseVAE / VAE, or Restarts from :func:`pyro_sparse.fit_restarts`
        With restarts, each restart is a chain, its factors aligned to restart 0 (so
        ``arviz_stats.rhat`` across restarts measures identifiability).
    num_samples : int
        Draws per chain in the ``posterior`` group.
    X : array-like, shape (N, G), optional
        Data for ``observed_data`` and the predictive groups (needed by those).
    posterior_predictive : bool
        Add ``posterior_predictive`` (variable ``x``, dims obs_id x feature).
    log_likelihood : bool
        Add ``log_likelihood`` (variable ``x``, one value per row, z integrated out by
        importance sampling; see ``SparseVAE.log_likelihood``), for ``arviz_stats.loo``.
        It needs posterior spread: with a point mass (MAP guide, VAE) PSIS-LOO is undefined
        (compare held-out ``log_likelihood`` or ``score`` instead) and a warning says so.
    factors : bool
        Add ``z`` (dims obs_id x factor) to the posterior: draws of q(z_n | x_n) for the
        rows of ``X``, aligned like W. With restarts, ``rhat`` of ``z`` is the
        identifiability check for the factors themselves (it works for the VAE too).
    num_predictive : int, optional
        Draws per chain in the predictive groups (default ``min(num_samples, 200)``): the
        first draws of the posterior group. Memory is ``chains x draws x N x G`` floats for
        the posterior predictive; rows are processed in batches of ``batch_size``.
    n_particles : int
        Importance samples per row for the log-likelihood.
    batch_size : int
        Rows per pass in the predictive computations.
    seed : int
        Seed of the draws.

    Returns
    -------
    xarray.DataTree
        Groups ``posterior`` (W, inclusion, eta, sigma as the model has them; dims
        ``feature``, ``factor``), ``sample_stats`` (``loss``: mean negative ELBO per epoch,
        dims chain x epoch), ``observed_data``, ``posterior_predictive``,
        ``log_likelihood``. The root's attributes say what the draws are (``posterior_kind``
        is ``"point mass"`` for MAP fits).
    """
    import xarray as xr
    from arviz_base import from_dict

    chains = chains_of(model)
    first = chains[0][0]
    S = check_positive_int(num_samples, "num_samples")
    P = (min(S, 200) if num_predictive is None
         else check_positive_int(num_predictive, "num_predictive"))
    if P > S:
        raise ValueError(f"num_predictive ({P}) cannot exceed num_samples ({S})")
    if (posterior_predictive or log_likelihood) and X is None:
        raise ValueError("posterior_predictive and log_likelihood need the data: pass X")
    G, K = first.n_features_in_, first.n_factors
    names = first.feature_names_in_ or [f"feature_{g}" for g in range(G)]
    coords = {"feature": [str(n) for n in names], "factor": [f"factor_{k}" for k in range(K)]}

    if factors and X is None:
        raise ValueError("factors=True needs the data: pass X")
    draws = [est.posterior_draws(S, seed=seed) for est, _, _ in chains]
    if factors:
        rng = np.random.default_rng(seed)
        for d, (est, _, _) in zip(draws, chains):
            mu, sd = est.transform(X, return_std=True)
            d["z"] = (mu + sd * rng.standard_normal((S, *mu.shape))).astype(np.float32)
    posterior = {name: np.stack([_aligned(name, d[name], p, s)
                                 for d, (_, p, s) in zip(draws, chains)])
                 for name in draws[0]}
    data, dims = {}, {}
    if posterior:
        data["posterior"] = posterior
        dims.update({k: _DIMS[k] for k in posterior})
    arr = None
    if X is not None:
        arr, _ = first._prepare(X)
        if hasattr(arr, "toarray"):  # sparse input: observed_data is stored dense
            arr = arr.toarray()
        data["observed_data"] = {"x": arr}
        coords["obs_id"] = np.arange(arr.shape[0])
        dims["x"] = ["obs_id", "feature"]
    point_mass = all(est.posterior_is_point_mass_ for est, _, _ in chains)
    if log_likelihood and point_mass:
        warnings.warn("the posterior is a point mass (MAP guide or VAE): every draw of the "
                      "log-likelihood is the same, so PSIS-LOO (arviz_stats.loo) cannot run on "
                      "it; fit with w_guide='meanfield', or compare held-out log-likelihoods",
                      UserWarning, stacklevel=2)
    if posterior_predictive:
        data["posterior_predictive"] = {"x": np.stack([
            est.sample_posterior_predictive(arr, P, batch_size=batch_size, seed=seed)
            for est, _, _ in chains])}
    kind = "point mass" if point_mass else "variational (mean-field Normal on W)"
    root_attrs = {
        "inference_library": "pyro_sparse (Pyro SVI, amortised guides)",
        "estimator": type(first).__name__,
        "estimator_params": repr(first.get_params()),
        "posterior_kind": kind,
        "posterior_note": _posterior_note(first),
        "chains": ("independent restarts aligned to chain 0 (Hungarian matching of encoder "
                   "means, sign flips)" if len(chains) > 1 else "one fit"),
    }
    if data:
        dt = from_dict(data, coords=coords, dims=dims, attrs={"/": root_attrs})
    else:
        dt = xr.DataTree()
        dt.attrs.update(root_attrs)
    if log_likelihood:
        ll = np.stack([est.log_likelihood(arr, P, n_particles=n_particles,
                                          batch_size=batch_size, seed=seed)
                       for est, _, _ in chains])
        ds = xr.Dataset({"x": (("chain", "draw", "obs_id"), ll)},
                        coords={"chain": np.arange(len(chains)), "draw": np.arange(P),
                                "obs_id": np.arange(arr.shape[0])},
                        attrs={"note": f"log p(x_n | globals_s), z_n integrated out by "
                                       f"importance sampling ({n_particles} encoder "
                                       f"proposals per row)"})
        dt["log_likelihood"] = xr.DataTree(ds)
    hist = [np.asarray(est.loss_history_, float) for est, _, _ in chains]
    E = min(len(h) for h in hist)
    dt["sample_stats"] = xr.DataTree(xr.Dataset(
        {"loss": (("chain", "epoch"), np.stack([h[:E] for h in hist]))},
        coords={"chain": np.arange(len(chains)), "epoch": np.arange(E)},
        attrs={"note": "training loss: mean minibatch negative ELBO per epoch"}))
    return dt
