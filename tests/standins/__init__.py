"""Loopback stand-ins for the outside services the operator talks to."""
