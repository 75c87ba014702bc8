"""`make bench`: what the sidecar costs a service, measured with real processes (docs/benchmarks.md)."""
