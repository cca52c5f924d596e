"""CloudiSENSE cluster tools: the cluster as typed, schema'd tool calls.

Flat public API over private modules.  The agent, the MCP server and the TUI
build on it::

    from cloudisense.tools import Toolbox, openai_tools
    tb = Toolbox(client)                       # any ClusterConnection
    args = tb.parse("find_nodes", '{"where": {"running": "logger"}, "sort_by": "temperature_c", ...}')
    result = await tb.run("find_nodes", args)
"""

from cloudisense.node._heartbeat import MethodInfo, Metrics, ProcessInfo, ServiceInfo

from ._cluster import (BUILTIN_METHODS, ClusterView, Condition, MetricKey, NodeFilter,
                       NodeInfo, NodeSelector, Order, Resolution, SelectionError,
                       SortKey, describe_filter, describe_selector, metric, resolve, select_nodes, summarize)
from ._compact import compact, to_text
from ._connection import ClusterConnection, Subscription, fetch_cluster, fetch_describe
from ._fake import CallRecord, FakeCluster, FakeNode
from ._models import (MAX_LIMIT, MAX_WATCH_EVENTS, MAX_WATCH_SECONDS, Args, BroadcastArgs, CallArgs, CallResult,
                      DescribeServiceArgs, DescribeServiceResult, FindNodesArgs, FindNodesResult, GetNodeArgs,
                      MethodDetail, NodeDetail, NodeSummary, ToolName, WatchArgs, WatchResult)
from ._schema import TOOL_NAME_RE, openai_tool, strict_problems, strict_schema
from ._tools import TOOLS, PreparedCall, ToolError, Toolbox, ToolSpec, error_dict, openai_tools, summary_of

__all__ = [
    "Args", "BUILTIN_METHODS", "BroadcastArgs", "CallArgs", "CallRecord", "CallResult", "ClusterConnection",
    "ClusterView", "Condition", "DescribeServiceArgs", "DescribeServiceResult", "FakeCluster", "FakeNode",
    "FindNodesArgs", "FindNodesResult", "GetNodeArgs", "MAX_LIMIT", "MAX_WATCH_EVENTS", "MAX_WATCH_SECONDS",
    "MethodDetail", "MethodInfo", "MetricKey", "Metrics", "NodeDetail", "NodeFilter", "NodeInfo", "NodeSelector",
    "NodeSummary", "Order", "PreparedCall", "ProcessInfo", "Resolution", "SelectionError", "ServiceInfo",
    "SortKey", "Subscription", "TOOLS", "TOOL_NAME_RE", "ToolError", "ToolName", "ToolSpec", "Toolbox",
    "WatchArgs", "WatchResult", "compact", "describe_filter", "error_dict", "describe_selector", "fetch_cluster",
    "fetch_describe", "metric", "openai_tool", "openai_tools", "resolve", "select_nodes", "strict_problems",
    "strict_schema", "summarize", "summary_of", "to_text",
]
