"""Load-limit compliance: the check (``check``, pure: samples and limits in, verdict out) and the monitor
that samples a reference meter for it (``monitor``). Imports no site code: the conditions that run
scenarios and the suite self-test live in ``hil.site``."""
