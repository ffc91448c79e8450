"""OCPP 1.6 suites, Central System under test (OCTT 1.6 section 3)."""
