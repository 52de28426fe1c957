"""Heads: small models trained on stored embeddings (temporal CNN, XGBoost energy)."""
