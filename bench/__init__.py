"""geosam benchmarks: `python -m bench` (all), `python -m bench --quick` (scaled down).

Each benchmark prints its figures and, for every target of issue 6, the measured ratio or value
against the target with PASS/FAIL. Results and the machine they came from go in RESULTS.md.
"""
