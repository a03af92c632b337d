"""Preflight: predict, before anything is written, which steps of a plan the applying principal
may not perform (Azure RBAC and ABAC as ARM evaluates them) and which limits apply would hit.

Pure: everything it needs is handed in (`evaluate.Facts`); it never calls Azure. It is written
independently of the sandbox's evaluator, which the tests use as the oracle to compare with.
"""
