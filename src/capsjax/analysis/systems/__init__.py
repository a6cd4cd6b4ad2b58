"""The same CapsNet training step and forward pass in capsjax and in its peers, each run in its own process.

Each module here is also a script that prints one JSON line (see ``protocol.py``): the peers
(``keras_capsnet.py``, ``torch_capsnet.py``) are our own transcriptions of the paper's network in
the way each framework's users write it, and import nothing of capsjax, so a peer's process holds
only its own framework. ``capsjax_capsnet.py`` measures capsjax by the same protocol.
"""
