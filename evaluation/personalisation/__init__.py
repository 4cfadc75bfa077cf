"""Personalisation: revealed preferences, preference alignment with CAS and conditional FVD (alignment), the
engagement model (engagement, engagement_eval) and `reelgan-eval align | engagement` (cli).
Imports data, gan, generate, evaluation.features and evaluation.metrics; never the slot or the report."""
