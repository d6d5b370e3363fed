"""Benchmark harness: a plain-PyTorch reference loop and the side-by-side comparison with cvsweep."""
