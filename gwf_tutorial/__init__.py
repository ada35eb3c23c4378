"""gwf_tutorial."""
