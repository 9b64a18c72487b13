"""Semi-amortised refinement of a fitted Sparse VAE's posterior over W.

An amortised encoder cannot put every row's q(z_n) at that row's own optimum (the
amortisation gap), and a W posterior fitted against those q(z_n) inherits their errors: on a
few thousand rows a loading's posterior sd is a few thousandths, smaller than the shifts the
encoder's misfit causes. :func:`refine_posterior` starts one free Normal q(z_n) per training
row at the encoder's output and trains it together with W's variational posterior (and sigma
and eta), the decoder and the encoder held fixed, then moves every factor to the ELBO's
optimum along its scale symmetry and rescales the encoder to the refined q(z)'s second moments.
"""

from __future__ import annotations

from ..guides import ModelGuide, PerRowNormalGuide
from .scale_symmetry import rescale_factors
from .svi import fit_svi, frozen, full_data_loss

__all__ = ["refine_posterior"]


def refine_posterior(model, guide, x_ng, *, epochs: int = 200, batch_size: int = 200,
                     lr: float = 1e-2, seed: int = 0, lr_decay: float = 0.25,
                     progress: bool = False, encode_batch_size: int = 1024) -> dict:
    """Refit W's variational posterior against free per-row q(z_n), in place.

    Parameters
    ----------
    model : SparseVAEModel
        A fitted Sparse VAE without ``factor_correlation``. Its parameters (the decoder) are
        held fixed.
    guide : ModelGuide
        Its fitted guide with a variational W guide (not ``map``). The globals guide is
        refined in place; the encoder is held fixed during training and rescaled after it.
    x_ng : torch.Tensor or SparseRows, shape (N, G)
        The training rows, on the model's device.
    epochs, batch_size, lr, seed, lr_decay, progress
        As for :func:`~pyro_sparse.infer.fit_svi`. Each row's q(z_n) gets one step per
        epoch, so the phase needs about as many epochs as the fit did.
    encode_batch_size : int
        Rows per encoder pass when the per-row guide is started and compared.

    Returns
    -------
    dict
        ``loss_before`` and ``loss_after`` (full-data negative ELBO, amortised encoder
        before, per-row q(z) after), ``history`` (per-epoch loss of the phase), ``scale`` and
        ``log_scale_sd`` (the scale-symmetry step after it, see
        :func:`~pyro_sparse.infer.rescale_factors`) and ``encoder_scale`` (the factor each
        encoder output was multiplied by so that its second moments match the per-row
        q(z)'s), ``loc_nk`` and ``scale_nk`` (the refined per-row q(z) of the training
        rows, tensors of shape (N, K), on the scale of the refined W).

    Raises
    ------
    ValueError
        For a model without W, with ``factor_correlation``, or a ``map`` W guide.
    """
    if not hasattr(model, "lambda0"):
        raise ValueError("refine_posterior needs a model with loadings W (a Sparse VAE)")
    if getattr(model, "factor_correlation", False):
        raise ValueError("refine_posterior does not support factor_correlation=True")
    gg, encoder = guide.globals_guide, guide.local_guide
    if not hasattr(gg, "W_loc_gk"):
        raise ValueError("refine_posterior refines a variational posterior over W; the map "
                         "guide has none (use w_guide='meanfield', 'lowrank', 'spikeslab' or "
                         "'spikeslab_lowrank')")
    loss_before = full_data_loss(model, guide, x_ng)
    rows = PerRowNormalGuide(*encoder.encode_rows(x_ng, encode_batch_size))
    row_guide = ModelGuide(gg, rows)  # the encoder is not in it: fit_svi leaves it alone
    with frozen(model):
        history = fit_svi(model, row_guide, x_ng, epochs=epochs, batch_size=batch_size, lr=lr,
                          seed=seed, progress=progress, desc="refine posterior",
                          lr_decay=lr_decay)
        step = rescale_factors(model, row_guide, x_ng, batch_size=encode_batch_size)
        loss_after = full_data_loss(model, row_guide, x_ng)
        S_rows, _ = rows.second_moments()
        S_enc, _ = encoder.second_moments(x_ng, encode_batch_size)
        c_k = (S_rows / S_enc).sqrt()
        encoder.scale_factors(c_k)
    return {"loss_before": float(loss_before), "loss_after": float(loss_after),
            "history": [float(v) for v in history], "scale": step["scale"],
            "log_scale_sd": step["log_scale_sd"], "encoder_scale": c_k.numpy(),
            "loc_nk": rows.loc_nk.detach().clone(),
            "scale_nk": rows.log_scale_nk.detach().exp()}
