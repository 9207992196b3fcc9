"""Evaluation: MTEB/trec_eval metrics, retrieval and STS tasks, index quality, result files and plots."""
