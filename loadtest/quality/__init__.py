"""Detection-quality harness for a rule pack: precision/recall on public labelled data, evasion
robustness on what the pack matches, and a built-in list of benign traps that must stay clean.

Run: `.venv/bin/python -m loadtest.quality --data DIR` (DIR: the evaluation data, docs/quality.md).
"""
