"""OCTT 2.0.1 suites, charging station under test."""
