"""Who may do what: API tokens, OIDC bearer tokens, roles and permissions, rate limits, secret configs."""

from queen.security.authenticator import Authenticator, AuthSettings
from queen.security.permissions import (
    OPEN_RPCS,
    ROLE_PERMISSIONS,
    ROUTE_PERMISSIONS,
    RPC_PERMISSIONS,
    Permission,
    Role,
    require,
)
from queen.security.principal import Principal, current_principal

__all__ = [
    "OPEN_RPCS",
    "ROLE_PERMISSIONS",
    "ROUTE_PERMISSIONS",
    "RPC_PERMISSIONS",
    "AuthSettings",
    "Authenticator",
    "Permission",
    "Principal",
    "Role",
    "current_principal",
    "require",
]
