"""Stream codecs: JSONL records, .npy + sidecar, text lines, BEIR files, TREC runs."""
