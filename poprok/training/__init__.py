"""Training input: a Parquet copy's bar windows as PCM, for torch DataLoaders (no re-encode, no stall)."""
