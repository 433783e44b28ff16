"""The serving edge every gRPC process of the stack shares: one server factory with the pipeline's
limits, live health probing each dependency, reflection of the real services only, one error
mapping (safe messages; UNAVAILABLE for infrastructure, INTERNAL for bugs) and a graceful drain."""

from renderkit.edge.errors import ErrorMapping
from renderkit.edge.health import Dependency, Readiness
from renderkit.edge.server import Edge, serve

__all__ = ["Dependency", "Edge", "ErrorMapping", "Readiness", "serve"]
