"""Rule packs: the YAML format (schema), reading and validating (loader), compiling (compiler)."""
