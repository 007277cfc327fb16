"""tkjepa — a notebook-first teaching toolkit for ThinkJEPA."""

__version__ = "0.1.0"
