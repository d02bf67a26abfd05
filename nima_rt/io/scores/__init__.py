"""Score files: the writers (CSV, JSONL, resumable Parquet), the one reader of everything a run or a
rank writes, and the claim a run holds on its output (lock, overwrite policy, torn-tail repair)."""
