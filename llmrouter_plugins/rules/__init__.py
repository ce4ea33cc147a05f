"""Built-in router rule types, one module per ``[[routers]] type``."""
