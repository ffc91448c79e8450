"""Reports people want to read: Allure results with labels, categories and environment, measurements
and figures recorded by tests, the run record (JSON, versioned schema), live progress, and the HTML
report built by Allure 3.

Modules: ``measurement`` (what a test records), ``failure_origin`` (device under test, rig or test),
``categories`` (the report's failure buckets), ``environment`` (what a run ran on), ``run_record``
(journal and record), ``pytest_hooks`` (the plugin side), ``progress`` (the live display),
``allure_html`` (the HTML build).
"""

from hil.report.measurement import Measurement, MeasurementOutOfLimits, Measurements

__all__ = ["Measurement", "MeasurementOutOfLimits", "Measurements"]
