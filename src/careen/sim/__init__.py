"""Simulators of the services Careen talks to (Harbor), for tests, the demo and benchmarks."""
