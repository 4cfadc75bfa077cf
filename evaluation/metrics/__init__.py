"""Metrics: Gaussian feature statistics (stats), the Fréchet distance (frechet), the pinned protocol (protocol),
FID/FVD over streams of uint8 video (compute), real/fake pairing (pairing), the in-training fvd[domain] callback
(callbacks) and `reelgan-eval fid | fvd` (cli). Imports only data, generate, gan and evaluation.features."""
