"""Thin function handlers: parse HTTP input, call `core`, map errors."""
