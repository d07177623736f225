"""Redline: red-line moderation for group chats."""

__version__ = "0.1.0"
