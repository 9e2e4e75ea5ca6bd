"""Adapters: storage, the pydantic mapper, model providers and tools.

Kept empty on purpose: importing ``agentlog.adapters`` never pulls in optional SDKs.
"""
