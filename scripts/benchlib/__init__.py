"""The benchmark harness behind scripts/bench (not a test suite: nothing here runs in `make test`)."""
