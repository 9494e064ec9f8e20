"""The list engine: lists, members, posting rules, delivery."""
