"""Benchmarks (make bench): figures are medians of several runs, compared within one run."""
