"""Helpers shared by the test suites (fakes, a child-process service runner)."""
