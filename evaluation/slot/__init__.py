"""The quality-gated recommendation slot: per-clip scores (scores), config, gate and ranking (gate), the output
files (store), the offline check against the hidden truth (check), the run itself (run) and `reelgan-eval slot`
(cli). The top of the computation rooms: it may import every room below it, never the report."""
