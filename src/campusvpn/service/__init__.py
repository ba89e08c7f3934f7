"""Use cases: the core's rules applied to stored accounts. Front ends call only this layer."""
