"""Consumer: the per-node tasks — the trigger that waits, the pure decision, the sensor and the audit."""
