"""Mail on the communes' domains: the accounts store, DNS records, and their checks."""
