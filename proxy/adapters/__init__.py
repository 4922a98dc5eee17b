"""Provider adapters: one module per wire format behind the contract in ``base``."""
