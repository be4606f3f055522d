"""Reading the archives: tar.gz streams checked end to end, resumable downloads, WAV headers, 16-bit PCM (generic)."""
