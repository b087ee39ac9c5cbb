"""Peer libraries (torchdiffeq, torchdyn, torchode) behind one interface: the registry,
the solve calls and `nodecli backends`. Import-free: `import nodecli.backends.X` costs only X."""
