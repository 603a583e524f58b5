"""MIM6 security: who is asking (principal), what they may see and write (access), audit.

``principal`` and ``access`` are the contract MIM3 sharing and MIM4 consent build on.
"""
