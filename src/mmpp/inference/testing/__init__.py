"""Builders of the random-weight models that stand in for the hub's: the tiny SDXL the tests and the
CPU benchmarks run, the full-size one for GPU benchmarks and the meta-device accounting. Nothing on
the production path imports this package at start; `mmpp make-tiny-model` and `make-random-model`
expose it."""
