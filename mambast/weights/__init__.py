"""Weight conversion helpers: third-party checkpoints -> the formats mambast loads."""
