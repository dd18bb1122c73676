"""Tenants on a cabinet, through Pulumi: components, dynamic providers, the stack driver."""
