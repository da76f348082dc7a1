"""The services SDK: what a service that a saga calls is written with.

    from saga.service import BusinessError, Command, Service
"""

from saga.engine.events import CommandKind
from saga.engine.inputs import ReplyOutcome
from saga.errors import BusinessError
from saga.service.changelog import read_state
from saga.service.handlers import Command, Service, StagedState, StateView
from saga.service.state import ServiceState

__all__ = ["BusinessError", "Command", "CommandKind", "ReplyOutcome", "Service",
           "ServiceState", "StagedState", "StateView", "read_state"]
