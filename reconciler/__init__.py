"""reconciler: declarative, stateless reconciler for Azure user-assigned managed identities,
their federated identity credentials and role assignments."""

__version__ = "0.1.0"
