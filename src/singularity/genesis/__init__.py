"""Genesis: runs untrusted code in a sandbox, and tries changes as experiments with rollback."""
