"""Registry adapters: where the inventory and scan results come from (Harbor v2, Harbor 1.x)."""
