"""The Queen: Formicary's control plane (definitions, scheduling, supervision, approvals, artifacts)."""
