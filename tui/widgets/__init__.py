"""The console's widgets.  Each posts nested ``Message`` classes; the main screen handles them."""

from .ask import AskInput
from .cluster_table import ClusterTable
from .events_pane import EventsPane
from .plan_view import PlanView
from .rpc_panel import RpcLine, RpcPanel
from .topbar import TopBar

__all__ = ["AskInput", "ClusterTable", "EventsPane", "PlanView", "RpcLine", "RpcPanel", "TopBar"]
