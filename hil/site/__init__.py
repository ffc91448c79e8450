"""A site run and what is judged of it: scenarios, the fast in-memory loop, the run on a rig, a site whose
load manager is the device under test, the cloud-managed run over OCPP, the load-limit and fault
conditions, run metrics, the suite self-test and the architecture recommendation. Controllers live in
``hil.controllers``; this package runs them."""
