"""Power: the cabinet's draw estimated from its nodes and the load its guests bring."""

from kloudctl.power.estimate import NodeDraw, PowerEstimate, estimate_power, node_watts

__all__ = ["NodeDraw", "PowerEstimate", "estimate_power", "node_watts"]
