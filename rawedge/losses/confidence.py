"""The confidence terms: ``confidence_nll`` teaches a model's ``sigma`` output the size of its own RAW error.

Gaussian negative log-likelihood of the detached error ``e = raw - target`` under N(0, sigma^2):
``0.5 * (e^2 / sigma^2) + log sigma`` (its minimum is at sigma = |e|, so on average sigma learns the RMS
error of pixels that look alike). The error is detached so that claiming confidence never pulls the
reconstruction itself; only the sigma head (and the features it reads) learn from this term.

``prior_pull`` is the other half of "never worse than the analytic prior": an L1 pull of the output toward
the analytic inverse. Under an L1 reconstruction loss of weight 1, a pixel then leaves its prior only where
the training data agree on the direction with odds better than (1 + w) / (1 - w) (w = 1/3: 2 to 1); where
renderings disagree (a plain and a curved look of the same photo), the output stays at the prior instead
of at their average.
"""
from __future__ import annotations

import torch

SIGMA_FLOOR = 1e-4  # about 6.5 levels of 65535: below what 8-bit inputs can tell apart


def confidence_nll(sigma: torch.Tensor, raw: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean Gaussian NLL (constant dropped) of the detached error; all tensors [N,4,h,w].

    Example: ``confidence_nll(torch.full((1, 4, 2, 2), 0.1), torch.zeros(1, 4, 2, 2), torch.zeros(1, 4, 2, 2))``."""
    if sigma.shape != raw.shape or raw.shape != target.shape:
        raise ValueError(f"sigma {tuple(sigma.shape)}, raw {tuple(raw.shape)} and target "
                         f"{tuple(target.shape)} must have one shape")
    sigma = sigma.clamp(min=SIGMA_FLOOR)
    error = (raw - target).detach()
    return (0.5 * (error / sigma) ** 2 + torch.log(sigma)).mean()


def prior_pull(raw: torch.Tensor, analytic: torch.Tensor) -> torch.Tensor:
    """Mean absolute departure of the output from the analytic prior (both [N,4,h,w]); the prior is
    detached, it is the anchor, not a prediction.

    Example: ``prior_pull(torch.full((1, 4, 2, 2), 0.3), torch.full((1, 4, 2, 2), 0.1))`` is 0.2."""
    if raw.shape != analytic.shape:
        raise ValueError(f"raw {tuple(raw.shape)} and analytic {tuple(analytic.shape)} must have one shape")
    return (raw - analytic.detach()).abs().mean()
