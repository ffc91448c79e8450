"""OCPP 1.6 suites, charge point under test (OCTT 1.6 section 2)."""
