"""What a tool is, the registry, BFCL import, argument coercion and validation, built-in tools."""
