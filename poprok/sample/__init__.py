"""Synthetic POP-ROK-shaped archives: rendered drum loops, real file names and label layouts."""
