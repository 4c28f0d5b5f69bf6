"""Notifications: channels, routing by jurisdiction and department, the dispatcher."""

from responder.notify.channels import DeliveryError, Message, make_channel
from responder.notify.config import NotifyConfig, load_notify, load_notify_config
from responder.notify.dispatcher import Dispatcher
from responder.notify.router import route

__all__ = [
    "DeliveryError",
    "Dispatcher",
    "Message",
    "NotifyConfig",
    "load_notify",
    "load_notify_config",
    "make_channel",
    "route",
]
