"""Integrations with other frameworks, each in its own subpackage (imported only when used)."""
