"""Publishing: a script-free Parquet copy with its card, its figure, and its upload to the Hub."""
