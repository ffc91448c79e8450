"""The operator port of evhil's CSMS run out of process (``hil csms --operator-port``): a service port
(``hil.service_port``) through which a test bench asks the CSMS's operator console to act on one of its
charge points, as a rig file's ``command`` adapter does with ``hil do``.

``POST /<charge_point_id>/<action>`` with the action's values as a JSON object; the actions are those
of ``HarnessOperator`` (the console the in-process suites drive), so both run the same code:

=========================  ===============================================  ===============================
action                     values (optional in brackets)                    OCPP 1.6 / 2.0.1 request
=========================  ===============================================  ===============================
remote_start               connector, token, [profile, token_type]         RemoteStartTransaction /
                                                                            RequestStartTransaction
remote_stop                transaction                                      RemoteStopTransaction /
                                                                            RequestStopTransaction
reset                      kind (Hard, Soft; 2.0.1 also Immediate, OnIdle)  Reset
unlock                     connector                                        UnlockConnector
get_configuration          [key]                                            GetConfiguration / GetVariables
change_configuration       key, value                                       ChangeConfiguration /
                                                                            SetVariables
clear_cache                                                                 ClearCache
set_charging_profile       connector, profile (JSON object)                 SetChargingProfile
clear_charging_profile     [profile_id, connector, purpose, stack_level]    ClearChargingProfile
get_composite_schedule     connector, duration [s], [rate_unit]             GetCompositeSchedule
change_availability        connector, kind (Operative, Inoperative)         ChangeAvailability
trigger_message            message, [connector]                             TriggerMessage
=========================  ===============================================  ===============================

2.0.1 configuration keys read ``Component.Variable`` (``hil.ocpp.csms.variable_of_key``). The answer is the
charge point's CALLRESULT payload (``{"result": {...}}``, HTTP 200); HTTP 500 names a CALLERROR, no answer
within the CSMS's response timeout, or a charge point that is unknown or not connected; HTTP 400 a
missing or unexpected value.
"""

from __future__ import annotations

import inspect
from typing import Any

from hil.ocpp.csms import CSMS, HarnessOperator, OperatorError
from hil.service_port import Action, ServicePort

OPERATOR_ACTIONS = ("remote_start", "remote_stop", "reset", "unlock", "get_configuration", "change_configuration",
                    "clear_cache", "set_charging_profile", "clear_charging_profile", "get_composite_schedule",
                    "change_availability", "trigger_message")
"""The actions of the operator port: the suites' ``hil.control.CSMS_ACTIONS`` and two more."""


def console(csms: CSMS, cs_id: str) -> HarnessOperator:
    """``csms``'s operator console for charge point ``cs_id``; ``OperatorError`` if it never connected."""
    session = csms.sessions.get(cs_id)
    if session is None or session.connections == 0:
        seen = ", ".join(sorted(i for i, s in csms.sessions.items() if s.connections)) or "none yet"
        raise OperatorError(f"unknown charge point {cs_id!r}: it has not connected to this CSMS "
                            f"(charge points seen: {seen})")
    return csms.operator(cs_id)


def _action(csms: CSMS, name: str) -> Action:
    """The service-port action ``name``: ``HarnessOperator.<name>`` on the charge point of the path, with
    the method's own parameters (so a missing or unexpected value is a 400 naming it)."""
    async def act(target: str, **values: Any) -> Any:
        return await getattr(console(csms, target), name)(**values)

    parameters = list(inspect.signature(getattr(HarnessOperator, name)).parameters.values())[1:]
    act.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter("target", inspect.Parameter.KEYWORD_ONLY),
         *(p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in parameters)])
    return act


def operator_port(csms: CSMS, host: str = "127.0.0.1", port: int = 0) -> ServicePort:
    """The operator port of ``csms`` on ``host:port`` (0: a free port), not started yet."""
    return ServicePort({name: _action(csms, name) for name in OPERATOR_ACTIONS}, host, port)


__all__ = ["OPERATOR_ACTIONS", "console", "operator_port"]
