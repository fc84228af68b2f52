"""Grid definitions (TOML), shipped with the package as ``nlbench.builtin_grids``."""
