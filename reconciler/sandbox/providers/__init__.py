"""Per-namespace ARM behaviour: one module per resource provider the sandbox emulates."""
