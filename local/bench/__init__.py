"""Benchmarks for `make bench`: each prints its figures as ratios to a baseline
measured in the same run, never as absolute pass/fail timings."""
